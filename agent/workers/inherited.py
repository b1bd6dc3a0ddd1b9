"""What every job process would otherwise do for itself, done once in the worker's
forkserver (this module is one of its preloads), so that each job process inherits it.

- The OpenAI clients name the platform in their request headers: the first request of a
  job asked `platform.platform()`, which runs `uname -p` in a subprocess (a fork of a job
  process on the core the class is being greeted on).
- Captions in step with the voice split each reply's words into syllables: the framework
  builds its hyphenation patterns on the first word of a job's first reply (~6 ms of CPU).
"""

from __future__ import annotations

import platform

from livekit.agents.tokenize import basic


def build_inherited() -> None:
    platform.platform()  # cached by `platform`, with the processor it asked `uname` for
    basic.hyphenate_word("warm")  # the patterns are cached by the framework


build_inherited()  # at import: in the forkserver, before any job process is forked
