"""The teachers' live view, served by the web service: who is in each class now, with which
tutor, and every flag as it is raised. `feed` wakes the open pages when the records change,
`board` says what a class looks like now, `presence` keeps who is in each room from
LiveKit's webhooks, `ending` ends a visit from the page."""
