"""The school's web service: the student page, the teacher pages and the token API.

`python -m agent web` serves it (`app.create_app`); `python -m agent teachers` manages the
adults' accounts. It reads the records store the workers write to, and adds its own tables
(teachers, classes, visits, transcript views).
"""
