"""Stand-ins for what crosses the process boundary: scripted models, a wire-compatible OpenAI
server, an in-memory room, a Twirp dispatch server, a webhook receiver, a TCP proxy."""
