"""The evaluation harness (`python -m agent eval`): a labelled set of children's utterances
run through the production tutors and routing on any model, and a report of how often each
reaches the right tutor or the safety path, how good and safe the answers are, and what
each case cost."""
