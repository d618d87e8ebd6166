"""One session's conversation: the user's utterances, the agent's reply, the history.

The agent state the browser sees is derived, never stored: the user speaking
means "listening", otherwise the open reply says "thinking" or "speaking", and
with no reply the agent is "listening". A change of that value is published.

Speculation: a speculative final (the user paused) opens a reply at once, its
user message pending outside the history. The edge's SpeechEnded, the confirmed
final or the reply's playout confirms it (the message joins the history); a
SpeechStarted that continues the paused generation discards it (the edge has
cancelled the work): it never reaches the history nor a later request.

Priming: every partial (or, without ``prime_every_partial``, the first partial of a
turn, the newest partial at SpeechPaused and any partial after it) goes to the llm
as an LlmPrime (the prompt the request will have), so the request at the pause
finds most of its prompt evaluated. Those from the pause on are sent ``ahead``:
the llm may generate their reply before the request (services/llm/draft.py),
which adopts it if its prompt is the same. So a speculative final with the same
words as the partial primed ahead (case and punctuation aside) is requested
with that partial's text.

Backchannels: while a reply plays, a final that says nothing ("mhm", "yeah",
"(coughs)": services.common.backchannel) is the user listening, not a turn; it
neither cancels the reply nor joins the history. The same words while the agent
is silent or thinking are a turn like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from proto import messages as m
from proto.subjects import CONTROL, LLM_REQUEST, LLM_STREAM, PLAYOUT, STATE, TTS_REQUEST, VAD, Channel
from services.common.backchannel import says_nothing, words
from services.turns.conversation.config import ConversationConfig
from services.turns.conversation.effects import Drop, Effect, Outcome, Publish, TurnClosed
from services.turns.conversation.history import History
from services.turns.conversation.reply import AgentStateName, Phase, Reply


def as_said(transcript: str) -> str:
    """The transcript as the llm gets it: stripped, its first letter upper case.
    Whisper starts the same words either way from one partial to the next ("had he
    married" / "Had he married": 212 of 1065 pairs in ten bench runs), and the llm
    then evaluated the whole message again, from its first token."""
    text = transcript.strip()
    return text[:1].upper() + text[1:]


@dataclass
class UserTurns:
    """The newest generation heard starting, ended by the edge, and transcribed."""

    started: int = 0
    ended: int = 0
    final: int = 0

    @property
    def speaking(self) -> bool:
        return self.started > self.final

    def finalize(self, turn_id: int) -> None:
        self.final = turn_id
        self.started = max(self.started, turn_id)


class Session:
    def __init__(self, session_id: str, config: ConversationConfig, now: float) -> None:
        self.id = session_id
        self.last_active = now
        self._config = config
        self._history = History(config.history_max_messages)
        self._user = UserTurns()
        self._reply: Reply | None = None
        # Replies cancelled while playing: the edge still reports what was heard.
        self._superseded: dict[int, Reply] = {}
        self._newest_reply = -1
        # A speculation confirmed before its final arrived: that final is expected, not stale.
        self._expected_final = 0
        # Priming the llm: the newest partial, the newest turn primed and paused.
        self._partial: tuple[int, str] | None = None
        self._primed = 0
        self._paused = 0
        self._ahead: tuple[int, str] | None = None  # the newest prime sent ahead
        self._state: AgentStateName | None = None
        self._seq = 0
        self._out: list[Effect] = []

    @property
    def history(self) -> list[m.ChatMessage]:
        return self._history.messages()

    def drain(self) -> list[Effect]:
        """The effects of the last call, ending with the agent state if it changed."""
        state = self._agent_state()
        if state != self._state:
            self._state = state
            self._publish(STATE, m.AgentState(session_id=self.id, turn_id=self._turn, seq=0, state=state))
        out, self._out = self._out, []
        return out

    # --- inputs -------------------------------------------------------------

    def greet(self, now: float) -> None:
        if not self._config.greeting_enabled or not self._config.greeting.strip():
            return
        text, interruptible = self._config.greeting, self._config.greeting_interruptible
        self._open(Reply(0, now, scripted=True, generated=text, interruptible=interruptible))
        chunk = m.TextChunk(
            session_id=self.id,
            turn_id=0,
            seq=0,
            text=text,
            index=0,
            last=True,
            allow_interruptions=interruptible,
        )
        self._publish(TTS_REQUEST, chunk)

    def on_vad(self, msg: m.VadMsg, now: float) -> None:
        self.last_active = now
        if msg.turn_id < self._user.started or msg.turn_id <= self._user.final:
            self._drop(VAD, "stale")
        elif isinstance(msg, m.SpeechStarted):
            self._user.started = msg.turn_id
            if msg.continues:
                self._discard(msg.continues, now)
        elif isinstance(msg, m.SpeechEnded):
            self._user.ended = max(self._user.ended, msg.turn_id)
            self._confirm(msg.turn_id)
        else:  # SpeechPaused: stt decodes on it, its speculative final opens the reply
            self._paused = msg.turn_id
            if self._partial is not None and self._partial[0] == msg.turn_id:
                self._prime(*self._partial)

    def on_transcript(self, msg: m.TranscriptMsg, now: float, channel: Channel) -> None:
        self.last_active = now
        if msg.turn_id <= self._user.final:
            expected = isinstance(msg, m.TranscriptFinal) and not msg.speculative
            if expected and msg.turn_id == self._expected_final:
                self._expected_final = 0  # the final of a speculation confirmed earlier
            else:
                self._drop(channel, "stale")
        elif isinstance(msg, m.TranscriptFinal):
            if msg.speculative and msg.turn_id > self._user.ended:
                self._on_speculative_final(msg, now, channel)
            else:  # confirmed, or speculative on a turn the edge has already ended
                self._on_final(msg, now)
        else:
            self._on_partial(msg)

    def on_llm(self, msg: m.LlmStreamMsg, now: float) -> None:
        self.last_active = now
        reply = self._route(LLM_STREAM, msg.turn_id, superseded_too=False)
        if reply is None:
            return
        if isinstance(msg, m.LlmToken):
            reply.add_token(msg.text)
        elif reply.finish_generation(msg):
            self._close(reply, Outcome.FAILED, "", now)

    def on_playout(self, msg: m.PlayoutMsg, now: float) -> None:
        self.last_active = now
        if isinstance(msg, m.PlayoutStarted):
            self._confirm(msg.turn_id)  # the edge plays a reply only once the user's turn ended
            reply = self._route(PLAYOUT, msg.turn_id, superseded_too=False)
            if reply is not None:
                reply.playout_started()
            return
        reply = self._route(PLAYOUT, msg.turn_id, superseded_too=True)
        if reply is not None:
            outcome = Outcome.INTERRUPTED if msg.interrupted else Outcome.COMPLETED
            self._close(reply, outcome, msg.heard_text, now)

    def tick(self, now: float) -> None:
        reply = self._reply
        if reply is None or reply.phase is not Phase.PENDING:
            return
        if now - reply.requested_at >= self._config.reply_timeout_s:
            self._cancel(reply, "timeout")
            self._close(reply, Outcome.TIMED_OUT, "", now)

    # --- transitions --------------------------------------------------------

    def _on_final(self, msg: m.TranscriptFinal, now: float) -> None:
        if self._confirm(msg.turn_id):
            if not msg.speculative:
                self._expected_final = 0  # this is the final
            return
        self._user.finalize(msg.turn_id)
        if msg.speculative:
            self._expected_final = msg.turn_id  # the confirmed final of it will follow
        text = as_said(msg.text)
        if not text or self._backchannel(text):
            return  # noise, a cough or "mhm" over its voice: whatever the agent was doing goes on
        self._supersede(now)
        self._history.add_user(msg.turn_id, text)
        self._open(Reply(msg.turn_id, now))
        self._request(msg.turn_id, self._history.messages(), speculative=False)

    def _on_speculative_final(self, msg: m.TranscriptFinal, now: float, channel: Channel) -> None:
        """The user paused: start the reply now, on a user message kept aside."""
        if msg.turn_id < self._user.started or msg.turn_id <= self._newest_reply:
            self._drop(channel, "stale")  # the user already went on, or a duplicate
            return
        text = self._as_primed(msg.turn_id, as_said(msg.text))
        if not text or self._backchannel(text):
            return  # nothing said yet, or only "mhm" while the agent speaks
        self._supersede(now)
        self._open(Reply(msg.turn_id, now, speculative=True, user_text=text))
        self._request(msg.turn_id, [*self._history.messages(), m.ChatMessage("user", text)], speculative=True)

    def _on_partial(self, msg: m.TranscriptPartial) -> None:
        text = as_said(msg.text)
        if not text:
            return
        self._partial = (msg.turn_id, text)
        first = msg.turn_id > self._primed
        if first or msg.turn_id == self._paused or self._config.prime_every_partial:
            self._prime(msg.turn_id, text)

    def _prime(self, turn_id: int, text: str) -> None:
        """Let the llm evaluate the coming request's prompt ahead (services/llm/primer.py).
        At every partial by default: primed only at the first partial and the pause,
        the user's words (8-16 tokens) were evaluated beside the speculative final,
        at nice 19, and a request stopped that prime before it was done in 12 of 15
        bench turns (run 20261124-153458), so the request evaluated them again.
        Not while a reply is open: what the user hears of it joins the history
        first, so the prompt is not known yet."""
        if not self._config.prime_llm or self._reply is not None:
            return
        self._primed = max(self._primed, turn_id)
        ahead = turn_id == self._paused
        if ahead and self._primed_ahead(turn_id, text):
            return  # the same words as the draft in progress: a new prompt would restart it
        if ahead:
            self._ahead = (turn_id, text)
        prime = m.LlmPrime(
            session_id=self.id,
            turn_id=turn_id,
            seq=0,
            messages=self._prompt([*self._history.messages(), m.ChatMessage("user", text)]),
            max_tokens=self._config.max_tokens,
            ahead=ahead,
        )
        self._publish(LLM_REQUEST, prime)

    def _as_primed(self, turn_id: int, text: str) -> str:
        """``text``, or the text primed ahead for ``turn_id`` if it has the same words:
        then the request has the draft's prompt and adopts it. The partial heard the
        same words in a shorter clip; Whisper's punctuation and case differ more
        often than its words ("He was not..." against "He was not")."""
        if self._ahead is not None and self._primed_ahead(turn_id, text):
            return self._ahead[1]
        return text

    def _primed_ahead(self, turn_id: int, text: str) -> bool:
        """``text`` says the words primed ahead for ``turn_id``."""
        said = words(text)
        ahead = self._ahead
        return bool(said) and ahead is not None and ahead[0] == turn_id and words(ahead[1]) == said

    def _backchannel(self, text: str) -> bool:
        """ "Mhm", "yeah" or a cough while the agent speaks is listening, not a turn:
        the edge resumes its paused voice on the same rule (services.common.backchannel)."""
        reply = self._reply
        return reply is not None and reply.phase is Phase.PLAYING and says_nothing(text)

    def _confirm(self, turn_id: int) -> bool:
        """The speculative reply of ``turn_id`` stands: its user message becomes history."""
        reply = self._reply
        if reply is None or not reply.speculative or reply.turn_id != turn_id:
            return False
        reply.speculative = False
        self._user.finalize(turn_id)
        self._history.add_user(turn_id, reply.user_text)
        self._expected_final = turn_id
        return True

    def _discard(self, continued: int, now: float) -> None:
        """The user went on after pausing in ``continued``: its speculative reply is
        void. The edge has already sent the Cancel; nothing reaches the history."""
        reply = self._reply
        if reply is not None and reply.speculative and reply.turn_id <= continued:
            self._close(reply, Outcome.DISCARDED, "", now)

    def _request(self, turn_id: int, messages: list[m.ChatMessage], *, speculative: bool) -> None:
        request = m.LlmRequest(
            session_id=self.id,
            turn_id=turn_id,
            seq=0,
            messages=self._prompt(messages),
            max_tokens=self._config.max_tokens,
            speculative=speculative,
        )
        self._publish(LLM_REQUEST, request)

    def _prompt(self, messages: list[m.ChatMessage]) -> list[m.ChatMessage]:
        return [m.ChatMessage("system", self._config.system_prompt), *messages]

    def _supersede(self, now: float) -> None:
        """A newer utterance replaces the reply in progress, whatever its phase."""
        reply = self._reply
        if reply is None:
            return
        playing = reply.phase is Phase.PLAYING
        if reply.interruptible or not playing:
            self._cancel(reply, "superseded")  # an uninterruptible one being heard plays out
        self._reply = None
        if playing:
            self._superseded[reply.turn_id] = reply  # wait for PlayoutFinished
        else:
            self._close(reply, Outcome.SUPERSEDED, "", now)

    def _open(self, reply: Reply) -> None:
        self._reply = reply
        self._newest_reply = max(self._newest_reply, reply.turn_id)

    def _close(self, reply: Reply, outcome: Outcome, heard: str, now: float) -> None:
        if self._reply is reply:
            self._reply = None
        self._superseded.pop(reply.turn_id, None)
        closed = TurnClosed(
            self.id, reply.turn_id, outcome, heard, reply.generated_text, now - reply.requested_at
        )
        # Only what the user heard becomes history; a reply nobody heard leaves no
        # assistant message at all (an empty one would confuse some chat APIs).
        if heard.strip():
            self._history.add_assistant(reply.turn_id, heard.strip(), interrupted=closed.interrupted)
        self._out.append(closed)

    def _route(self, channel: Channel, turn_id: int, *, superseded_too: bool) -> Reply | None:
        """The reply a stream or playout message belongs to, or None (and a drop)."""
        if self._reply is not None and self._reply.turn_id == turn_id:
            return self._reply
        if superseded_too and turn_id in self._superseded:
            return self._superseded[turn_id]
        self._drop(channel, "stale" if turn_id <= self._newest_reply else "unexpected")
        return None

    # --- output -------------------------------------------------------------

    @property
    def _turn(self) -> int:
        return max(self._user.started, self._newest_reply, 0)

    def _agent_state(self) -> AgentStateName:
        if self._user.speaking or self._reply is None:
            return "listening"
        return self._reply.agent_state

    def _cancel(self, reply: Reply, reason: str) -> None:
        cancel = m.Cancel(session_id=self.id, turn_id=reply.turn_id, seq=0, reason=reason)
        self._publish(CONTROL, cancel)

    def _publish(self, channel: Channel, message: msgspec.Struct) -> None:
        # seq is per publisher and per session, so the session numbers its own messages.
        self._seq += 1
        self._out.append(Publish(channel, msgspec.structs.replace(message, seq=self._seq)))

    def _drop(self, channel: Channel, reason: str) -> None:
        self._out.append(Drop(channel, reason))
