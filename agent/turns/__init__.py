"""Turn-taking: the session's turn handling and VAD from the settings, on the pipeline and
for a realtime tutor whose turns this product ends (`options`), and the patience a student
earns by going on over the tutor (`patience`)."""
