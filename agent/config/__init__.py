"""What an operator and a school configure: the settings (from the environment) and the
tutor roster (`tutors.toml`)."""
