"""The web service's routes, one router per audience: the student's page and API, the
teachers' pages, the teachers' JSON API."""
