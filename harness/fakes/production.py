"""The production model wiring pointed at the wire-compatible OpenAI server: settings, and
scripts for each tutor by its model name (shared by tests and benchmarks)."""

from __future__ import annotations

from typing import Any

from agent.config.roster import Roster, roster_for
from agent.config.settings import Settings, load_settings
from agent.conversation.state import TutorKind, TutorModels
from agent.workers.models import pipeline_tutor_models, realtime_tutor_models
from harness.fakes.llm import Reply, ToolCall, call, say
from harness.fakes.openai_server import API_KEY, ChatCall, FakeOpenAI, RealtimeCall

SEVEN_EIGHTS = "What is seven times eight?"
FIFTY_SIX = "Seven times eight is fifty-six."
GREETING = "Hi! What would you like to learn?"
NOUN = "What is a noun?"
NAPOLEON = "Who was Napoleon?"
NOUN_ANSWER = "A noun names a person, place or thing."
NAPOLEON_ANSWER = "Napoleon was a French emperor."
WELCOME_BACK = "Welcome back! Before, you asked:"
# what a child in distress might say: the moderation script flags it as self-harm (urgent)
UPSET = "Nobody would miss me if I was gone."
MODELS = {
    "orchestrator": "orch-model",
    "math": "math-model",
    "history": "history-model",
    "english": "english-model",
}
VOICES = {"orchestrator": "coral", "math": "sage", "history": "ash", "english": "shimmer"}


def model_settings(base_url: str) -> dict[str, str]:
    """The settings that point every model role at the fake at `base_url` (the names the
    scripts below know each tutor by); upper-cased, a worker's environment."""
    return {
        "openai_base_url": base_url,
        "openai_api_key": API_KEY,
        **{f"{kind}_llm_model": model for kind, model in MODELS.items()},
        "stt_model": "stt-model",
        "tts_model": "tts-model",
        "realtime_model": "realtime-model",
    }


def settings_for(fake: FakeOpenAI, **overrides: Any) -> Settings:
    return load_settings(**model_settings(fake.url), handover_ready_timeout=5.0, **overrides)


def moderation_script(text: str) -> dict[str, float]:
    """The moderation fake's scores for `text`: self-harm for `UPSET`, else nothing."""
    if UPSET.lower().rstrip(".") in text.lower():
        return {"self-harm": 0.93, "self-harm/intent": 0.9}
    return {}


def tutor_of(model: str) -> str:
    return next(kind for kind, name in MODELS.items() if name == model)


def welcome_back(question: str) -> str:
    """What a resumed tutor says: the conversation so far is in its context."""
    return f"{WELCOME_BACK} {question or 'nothing yet'}"


def chat_script(call_: ChatCall) -> Reply:
    """Each tutor by its model name: greet, route, answer; welcome a student back by
    recalling their last question, when asked to (a resumed session)."""
    tutor = tutor_of(call_.model)
    question = call_.last_user()
    if any("come back" in text for text in call_.texts("system")[-1:]):
        return say(welcome_back(question))
    if tutor == "orchestrator":
        if not question:
            return say(GREETING)
        if "noun" in question:
            return call("route_to_english", question_summary=NOUN)
        if "Napoleon" in question:
            return call("route_to_history", question_summary=NAPOLEON)
        return call("route_to_math", question_summary=SEVEN_EIGHTS)
    if "noun" in question and "route_to_english" in call_.tools:
        return call("route_to_english", question_summary=NOUN)  # a specialist crosses directly
    if tutor == "math":
        return say(FIFTY_SIX)
    if tutor == "history":
        return say(NAPOLEON_ANSWER)
    return say("(the pipeline English tutor was not expected)")


HEARD_ALL = "That is my whole answer."  # an answer cut short in the context lacks it


def echo_script(call_: ChatCall) -> Reply:
    """The main tutor answers what it was asked, in the child's words: every student turn
    since its last whole answer (one cut short by the child does not count), as a model that
    sees the whole conversation would; it routes only a question about nouns, to English.
    Turn-taking benches read what a reply covered from its caption."""
    if any("come back" in text for text in call_.texts("system")[-1:]):
        return say(welcome_back(call_.last_user()))
    if call_.model == MODELS["orchestrator"] and "noun" in call_.last_user():
        return call("route_to_english", question_summary=NOUN)  # the English path's benches
    turns = [(m["role"], ChatCall("", [m], []).texts()) for m in call_.messages]
    return _echo([(role, texts[0]) for role, texts in turns if texts])


def realtime_echo_script(call_: RealtimeCall) -> Reply:
    """`echo_script` for the English realtime tutor: it answers what it was asked since its
    last whole answer, in the child's words."""
    turns = [
        (item.get("role", ""), RealtimeCall("", {}, [item], None).texts()) for item in call_.items
    ]
    return _echo([(role, texts[0]) for role, texts in turns if texts])


def _echo(turns: list[tuple[str, str]]) -> Reply:
    """The reply to every student turn since the tutor's last whole answer (role, text)."""
    asked: list[str] = []
    for role, text in turns:
        if role == "assistant" and HEARD_ALL in text:
            asked = []
        elif role == "user" and text.strip():
            asked.append(text.strip())
    if not asked:
        return say(GREETING)
    return say(f"You asked: {' '.join(asked)}. Let us work it out together. {HEARD_ALL}")


def realtime_script(call_: RealtimeCall) -> Reply:
    """The English realtime tutor: answers the noun question, hands Napoleon back."""
    if "Napoleon" in call_.last_user():
        return Reply(tool_calls=(ToolCall("route_back_to_orchestrator", {"reason": NAPOLEON}),))
    return say(NOUN_ANSWER)


def production_models(settings: Settings, roster: Roster | None = None) -> Any:
    """The cluster's jobs get exactly what the workers' prewarm and entrypoint build (from
    the settings' roster unless `roster` is given)."""
    roster = roster or roster_for(settings)

    def models(worker: str) -> tuple[dict[TutorKind, TutorModels], dict[str, Any]]:
        own = roster.default_tutor(worker)
        if roster.mode_of(worker) == "pipeline":
            tutor_models = pipeline_tutor_models(settings, roster)
            return tutor_models, {"llm": tutor_models[own].llm, "tts": tutor_models[own].tts}
        realtime = realtime_tutor_models(settings, roster, own)
        return {own: realtime}, {"tts": realtime.tts}

    return models
