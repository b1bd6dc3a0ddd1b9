"""Children's safety: every turn moderated, fixed kind lines, and alerts that reach an adult.

`moderation` asks the moderation endpoint and sorts a verdict into a tier; `lines` holds the
fixed lines a tutor says instead of generated text; `guard` gates what the pipeline tutors
say and watches the realtime tutor; `alerts` records flags and delivers alerts from the
records store's outbox.
"""
