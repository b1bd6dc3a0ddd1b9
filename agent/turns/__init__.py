"""Turn-taking for pipeline tutors: the session's turn handling and VAD from the settings
(`options`), and the patience a student earns by going on over the tutor (`patience`)."""
