"""Configuration, read from the environment and `.env` (see `.env.example`)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Annotated, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

# the roles a model endpoint serves; each may have its own base URL and key
MODEL_ROLES = ("llm", "stt", "tts", "realtime", "moderation")


MIN_SECRET_CHARS = 32


def strong_secret(value: SecretStr | None) -> SecretStr | None:
    """A secret we sign with: long, and not the `.env.example` placeholder (an operator who
    copied the file and forgot one would otherwise run with a secret anyone can read)."""
    if value is None:
        return value
    secret = value.get_secret_value()
    if "change-me" in secret:
        raise ValueError("still the .env.example placeholder: set a long random secret")
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(f"use at least {MIN_SECRET_CHARS} characters, e.g. `openssl rand -hex 32`")
    return value


def https_or_loopback(url: str) -> str:
    """A webhook URL alerts can go to: https, or plain http to this machine only (alert
    bodies carry a child's words)."""
    url = url.strip()
    if not url:
        return url
    parsed = urlsplit(url)
    host = parsed.hostname or ""
    if parsed.scheme == "https" and host:
        return url
    if parsed.scheme == "http" and (host == "localhost" or _is_loopback(host)):
        return url
    raise ValueError("use an https:// URL (plain http only to this machine)")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line naming the variable(s)."""


class RosterSettings(BaseSettings):
    """Which tutors exist and which worker this process is (see agent/config/roster.py)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # the roster file (empty: tutors.toml at the repository root)
    tutor_roster: str = ""
    # the roster worker agent/workers/named.py starts (empty: the orchestrator's worker)
    worker_name: str = ""


class LiveKitSettings(RosterSettings):
    """What talking to the LiveKit server needs (enough for the token command, which also
    reads the roster for the name of the worker it dispatches)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    livekit_url: str = Field(min_length=1)
    livekit_api_key: str = Field(min_length=1)
    livekit_api_secret: Annotated[SecretStr, AfterValidator(strong_secret)]

    # worker names (explicit dispatch): the roster's, unless these are set to other names
    # (then they rename the worker hosting the orchestrator / the English tutor)
    orchestrator_agent_name: str = "learning-orchestrator"
    english_agent_name: str = "learning-english"


class RecordsSettings(BaseSettings):
    """Where session records live (enough for `python -m agent records`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # session records (empty RECORDS_URL: nothing is recorded)
    records_url: str = "sqlite+aiosqlite:///data/tutor.db"
    records_retention_days: float = Field(default=30, gt=0)
    records_flush_timeout: float = Field(default=5.0, gt=0)

    @field_validator("records_url")
    @classmethod
    def _records_url_usable(cls, value: str) -> str:
        from agent.records.store import normalize_url

        if value.strip():
            normalize_url(value)  # RecordsConfigError is a ValueError: one clear line
        return value.strip()


EOT_MIN_SILENCE = 0.25  # the framework refuses a shorter VAD silence with its end-of-turn model


class TurnSettings(BaseSettings):
    """How a session decides the student has finished (see agent/turns/)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # measured on real children's voices (BENCHMARKS.md "Turn-taking with real children"):
    # answer after a short silence and stop the moment the child goes on; the end-of-turn
    # model ("model") tells a child's pause from a sentence's end no better than silence
    turn_detector: Literal["model", "vad", "stt"] = "vad"
    endpointing_mode: Literal["fixed", "dynamic"] = "fixed"
    min_endpointing_delay: float = Field(default=0.2, ge=0)
    max_endpointing_delay: float = Field(default=1.0, gt=0)
    # once the student speaks over the tutor, the rest of that turn waits this long (s):
    # a child who paused long enough for the tutor to start often pauses again
    resumed_endpointing_delay: float = Field(default=1.5, ge=0)
    # the local voice activity detector: silero_firered (speech when Silero or FireRedVAD
    # hears it, in the framework's native stream: hears whispering children Silero alone does
    # not), native (the framework's own `inference.VAD`, the Silero model in native code: the
    # cheapest), silero (the plugin, onnxruntime), none (no local VAD: the streaming
    # transcription's server VAD ends turns and starts interruptions; needs TURN_DETECTOR=stt
    # and STT_STREAMING=true)
    vad_engine: Literal["native", "silero", "silero_firered", "none"] = "silero_firered"
    vad_min_silence_duration: float = Field(default=0.2, gt=0)
    vad_activation_threshold: float = Field(default=0.5, gt=0, lt=1)
    stt_streaming: bool = False
    preemptive_generation: bool = True
    preemptive_tts: bool = True
    # the end-of-turn model's "unlikely" threshold; empty: the model's own (0.36 in English)
    eot_threshold: float | None = Field(default=None, gt=0, lt=1)
    # how long a child must speak over the tutor to stop it (s); a stop with no words after
    # it within the timeout was a false interruption: the tutor resumes
    interruption_min_duration: float = Field(default=0.08, gt=0)
    false_interruption_timeout: float = Field(default=1.0, gt=0)
    # who ends a realtime tutor's turns: server (the model's own) or local (this product's VAD
    # and endpointing, as on the pipeline, with the model's own turn detection off; measured
    # in BENCHMARKS.md "the English tutor": faster, but it answers half a paused sentence)
    realtime_turn_detection: Literal["server", "local"] = "server"

    @field_validator("eot_threshold", mode="before")
    @classmethod
    def _empty_is_the_models_own(cls, value: object) -> object:
        return unset_if_empty(value)

    @model_validator(mode="after")
    def _turns_without_a_vad(self) -> TurnSettings:
        if self.vad_engine == "none" and (self.turn_detector != "stt" or not self.stt_streaming):
            raise ValueError(
                "VAD_ENGINE=none needs TURN_DETECTOR=stt and STT_STREAMING=true: without a "
                "local VAD only the streaming transcription can tell when the student stops"
            )
        if self.vad_engine == "none" and self.realtime_turn_detection == "local":
            raise ValueError(
                "REALTIME_TURN_DETECTION=local needs a local VAD: set VAD_ENGINE to "
                "silero_firered, native or silero, or let the realtime model end turns "
                "(REALTIME_TURN_DETECTION=server)"
            )
        if self.turn_detector == "model" and self.vad_min_silence_duration < EOT_MIN_SILENCE:
            raise ValueError(
                f"TURN_DETECTOR=model needs VAD_MIN_SILENCE_DURATION of at least "
                f"{EOT_MIN_SILENCE} s (the end-of-turn model listens to that much silence)"
            )
        return self


G = TypeVar("G", bound=BaseSettings)


class Group(Generic[G]):
    """`settings.turns`: the settings seen as one group of them (what one consumer reads)."""

    def __init__(self, group: type[G]) -> None:
        self.group = group

    def __get__(self, settings: object, owner: type | None = None) -> G:
        if not isinstance(settings, self.group):
            raise AttributeError(f"a group of a settings object: {self.group.__name__}")
        return settings


def unset_if_empty(value: object) -> object:
    """`NAME=` in .env means not set (a key of its own, metrics, a secret)."""
    return None if isinstance(value, str) and not value.strip() else value


# a secret that may be left empty
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(unset_if_empty)]
# one we sign with (may be left empty where the setting is optional)
StrongSecret = Annotated[
    SecretStr | None, BeforeValidator(unset_if_empty), AfterValidator(strong_secret)
]
WebhookUrl = Annotated[str, AfterValidator(https_or_loopback)]


class ModelSettings(BaseSettings):
    """Where each model role is served and which models and voices it uses
    (`agent/workers/models.py`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # OpenAI or any OpenAI-compatible provider: one endpoint and key for every role (below,
    # with Azure's), and optional overrides per role (LLM, STT, TTS, realtime, moderation)
    llm_base_url: str = ""
    stt_base_url: str = ""
    tts_base_url: str = ""
    realtime_base_url: str = ""
    moderation_base_url: str = ""
    # a key per role (empty: OPENAI_API_KEY)
    llm_api_key: OptionalSecret = None
    stt_api_key: OptionalSecret = None
    tts_api_key: OptionalSecret = None
    realtime_api_key: OptionalSecret = None
    moderation_api_key: OptionalSecret = None
    # Azure OpenAI: when AZURE_OPENAI_ENDPOINT is set, every role uses the plugins' Azure
    # constructors, with the model settings as deployment names
    azure_openai_endpoint: str = ""
    azure_openai_api_key: OptionalSecret = None
    azure_openai_api_version: str = ""
    openai_base_url: str = ""
    # after the per-role keys and Azure's: its check reads them (see _key_for_every_role)
    openai_api_key: OptionalSecret = Field(default=None, validate_default=True)

    # models per role; a tutor's own models and voice are the roster's (tutors.toml), and
    # these per-tutor settings, when set, override it (empty: the roster's)
    orchestrator_llm_model: str = ""
    math_llm_model: str = ""
    history_llm_model: str = ""
    english_llm_model: str = ""
    stt_model: str = "gpt-4o-mini-transcribe"
    tts_model: str = "gpt-4o-mini-tts"
    realtime_model: str = ""
    moderation_model: str = "omni-moderation-latest"
    # audio format asked of the TTS endpoint: raw PCM needs no decoding in the worker
    tts_response_format: Literal["pcm", "mp3", "wav", "opus", "aac", "flac"] = "pcm"

    orchestrator_voice: str = ""
    math_voice: str = ""
    history_voice: str = ""
    english_voice: str = ""

    @field_validator("openai_api_key", mode="after")
    @classmethod
    def _key_for_every_role(cls, value: SecretStr | None, info: ValidationInfo) -> object:
        """OPENAI_API_KEY is required unless every role has a key of its own (or Azure's)."""
        if value is not None:
            return value
        data = info.data
        if data.get("azure_openai_endpoint") and data.get("azure_openai_api_key"):
            return value
        without = [role for role in MODEL_ROLES if data.get(f"{role}_api_key") is None]
        if without:
            others = ", ".join(f"{role.upper()}_API_KEY" for role in without)
            raise PydanticCustomError(
                "missing",
                "required unless every role has its own key ({others})",
                {"others": others},
            )
        return value


class CapacitySettings(BaseSettings):
    """How many students a worker admits and how it runs their jobs
    (`agent/workers/admission.py`, `server.py`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # capacity: sessions a worker accepts (0: WORKER_SESSIONS_PER_CORE x the machine's cores),
    # job processes kept warm for a class arriving at once (0: one per session it admits)
    worker_capacity: int = Field(default=0, ge=0)
    worker_sessions_per_core: int = Field(default=6, ge=1)
    # the share of its CPUs at which a worker with sessions takes no new student (used that
    # much without a break for 10 s: they are falling behind real time); 1: never
    worker_cpu_limit: float = Field(default=0.9, gt=0, le=1)
    num_idle_processes: int = Field(default=0, ge=0)
    # where a worker runs its jobs: a process each (isolated: a crash or a memory limit
    # ends one conversation), or a thread each in the worker's own process (one FFI runtime
    # and one interpreter for all: half the CPU to start a job; it admits one core's sessions)
    job_executor: Literal["process", "thread"] = "process"
    drain_timeout: int = Field(default=600, ge=0)
    job_memory_limit_mb: float = Field(default=0, ge=0)

    # the worker's HTTP health endpoint; 0: a free port the system picks (replicas sharing
    # one network), found by `python -m agent.workers.health WORKER`
    worker_http_port: int = Field(default=8081, ge=0, le=65535)


class SafetySettings(BaseSettings):
    """Moderation of every turn and the alerts to adults (`agent/safety/`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # moderation of every turn, and what the child hears on a flag
    moderation_enabled: bool = True
    moderation_timeout: float = Field(default=2.0, gt=0)
    moderation_fail_mode: Literal["closed", "open"] = "closed"
    moderation_concern_threshold: float = Field(default=0.5, gt=0, le=1)
    moderation_urgent_threshold: float = Field(default=0.5, gt=0, le=1)
    moderation_urgent_categories: str = (
        "self-harm,self-harm/intent,self-harm/instructions,sexual/minors,"
        "harassment/threatening,hate/threatening,violence"
    )
    safeguarding_helpline_text: str = ""

    # alerts to adults: webhooks per channel, signed with the secret
    teacher_webhook_url: WebhookUrl = ""
    safeguarding_webhook_url: WebhookUrl = ""
    alert_webhook_secret: StrongSecret = None
    alert_poll_interval: float = Field(default=2.0, gt=0)
    alert_retry_hours: float = Field(default=48.0, gt=0)


class ObservabilitySettings(BaseSettings):
    """Our metrics and traces beside the framework's (`agent/telemetry/`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # observability (both off by default)
    prometheus_port: Annotated[int | None, BeforeValidator(unset_if_empty)] = Field(
        default=None, ge=1, le=65535
    )
    prometheus_multiproc_dir: str = ""
    otlp_traces_endpoint: str = ""
    traces_allow_pii: bool = False


class Settings(
    LiveKitSettings,
    RecordsSettings,
    TurnSettings,
    ModelSettings,
    CapacitySettings,
    SafetySettings,
    ObservabilitySettings,
):
    """Everything a worker needs: each group is also reachable by its consumer's name
    (`settings.turns`, `settings.capacity`, ...), typed as that group alone."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, ignored_types=(Group,)
    )

    # the student's audio as a pipeline session receives it: 16 kHz is what Silero VAD and
    # the end-of-turn model run at (no resampling of every frame); 24 kHz is the framework's
    audio_input_sample_rate: Literal[16000, 24000, 48000] = 16000
    # the frames it arrives in (ms): the VAD hears the student no sooner than a frame ends,
    # so a shorter frame stops the tutor sooner when the student speaks over it
    audio_input_frame_ms: int = Field(default=50, ge=10, le=100)

    # captions (the page's) in step with the tutor's voice; false: sent as soon as the text
    # is ready, which saves the framework's speaking-rate analysis of every reply
    captions_synced: bool = True

    # where fixed lines' audio is kept once synthesised (empty: a temp directory)
    line_cache_dir: str = ""

    # timeouts and limits
    handover_ready_timeout: float = Field(default=6.0, gt=0)
    dispatch_attempt_timeout: float = Field(default=4.0, gt=0)
    dispatch_max_attempts: int = Field(default=3, ge=1)
    max_handoffs_without_student_turn: int = Field(default=3, ge=1)

    livekit = Group(LiveKitSettings)
    records = Group(RecordsSettings)
    turns = Group(TurnSettings)
    models = Group(ModelSettings)
    capacity = Group(CapacitySettings)
    safety = Group(SafetySettings)
    observability = Group(ObservabilitySettings)


class WebSettings(LiveKitSettings, RecordsSettings):
    """What the web service needs (`python -m agent web`): no model keys."""

    # where it listens (compose sets 0.0.0.0 inside the container)
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=1, le=65535)
    # the server URL the students' browsers connect to (empty: LIVEKIT_URL); behind the
    # TLS proxy, wss://<the school's host name>
    livekit_public_url: str = ""
    # signs the teachers' session cookies; empty: a random one per start (sign-ins then
    # end when the service restarts)
    web_session_secret: StrongSecret = None
    # the session cookie is `Secure` (sent over HTTPS only): auto, whenever the request came
    # over HTTPS (directly or from a trusted proxy's X-Forwarded-Proto); true, always;
    # false, never (plain http on this machine)
    web_secure_cookies: bool | Literal["auto"] = "auto"
    web_session_hours: float = Field(default=8, gt=0, le=24 * 7)
    # wrong class codes per client address (guesses; nothing else a student sends counts
    # against an address, which a school's students often share), and rejoins per visit
    web_token_rate_limit: str = "60/minute"
    # failed sign-ins per username from one client address (four times this per address);
    # only failures count, after the form's CSRF check, so nobody can lock a teacher out
    web_login_rate_limit: str = "5/minute"
    # a student page's "is my tutor coming?" asks, per student (its token)
    web_tutor_rate_limit: str = "30/minute"
    # request bodies larger than this are refused (413) before anything reads them
    web_max_body_bytes: int = Field(default=16_384, ge=1024)
    # no tutor in a student's room after this many seconds: the orchestrator is dispatched
    # again (then with backoff), at most WEB_TUTOR_MAX_DISPATCHES times in all
    web_tutor_arrival_timeout: float = Field(default=8, gt=0)
    web_tutor_max_dispatches: int = Field(default=3, ge=1, le=10)
    # a page reloaded, or whose connection could not be restored, within this many minutes
    # of its last join comes back to the same visit, and its tutor resumes the conversation
    web_resume_minutes: float = Field(default=30, gt=0, le=24 * 60)
    # proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (comma-separated
    # addresses or networks); compose sets its TLS proxy's address
    web_trusted_proxies: str = "127.0.0.1"
    # /metrics needs `Authorization: Bearer <this>`; empty: it answers this machine only
    web_metrics_token: OptionalSecret = None

    @field_validator("web_metrics_token")
    @classmethod
    def _metrics_token_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("use at least 16 characters, e.g. `openssl rand -hex 32`")
        return value

    @field_validator("web_secure_cookies", mode="before")
    @classmethod
    def _secure_cookies_word(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        word = value.strip().lower()
        if word in ("", "auto"):
            return "auto"
        if word not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ValueError("use auto, true or false")
        return word

    @field_validator("web_token_rate_limit", "web_login_rate_limit", "web_tutor_rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate like '60/minute' or '5 per 10 seconds'"
            ) from None
        return value


S = TypeVar("S", bound=BaseSettings)


def _env_name(loc: tuple[int | str, ...]) -> str:
    return str(loc[0]).upper() if loc else "?"


def load_settings(kind: type[S] = Settings, **overrides: object) -> S:  # type: ignore[assignment]
    """Read the settings; raise `SettingsError` with one readable line on any problem."""
    try:
        return kind(**overrides)
    except ValidationError as e:
        missing = [
            _env_name(err["loc"]) + ("" if err["msg"] == "Field required" else f" ({err['msg']})")
            for err in e.errors()
            if err["type"] == "missing"
        ]
        invalid = [
            f"{_env_name(err['loc'])} ({err['msg']})"
            for err in e.errors()
            if err["type"] != "missing"
        ]
        parts = []
        if missing:
            parts.append("missing required setting(s): " + ", ".join(missing))
        if invalid:
            parts.append("invalid setting(s): " + "; ".join(invalid))
        raise SettingsError(
            "; ".join(parts) + " (set them in the environment or in .env; see .env.example)"
        ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def load_settings_or_exit(worker: str) -> Settings:
    """For a worker's start-up: one clear line and a non-zero exit instead of a traceback."""
    try:
        return get_settings()
    except SettingsError as e:
        raise SystemExit(f"{worker}: {e}") from None
