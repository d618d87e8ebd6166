"""One session's conversation: the user's utterances, the agent's reply, the history.

The agent state the browser sees is derived, never stored: the user speaking
means "listening", otherwise the open reply says "thinking" or "speaking", and
with no reply the agent is "listening". A change of that value is published.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from proto import messages as m
from proto.subjects import CONTROL, LLM_REQUEST, LLM_STREAM, PLAYOUT, STATE, TTS_REQUEST, VAD, Channel
from services.turns.conversation.config import ConversationConfig
from services.turns.conversation.effects import Drop, Effect, Outcome, Publish, TurnClosed
from services.turns.conversation.history import History
from services.turns.conversation.reply import AgentStateName, Phase, Reply


@dataclass
class UserTurns:
    """The newest utterance heard starting and the newest one transcribed."""

    started: int = 0
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
        text = self._config.greeting
        self._open(Reply(0, now, scripted=True, generated=text))
        chunk = m.TextChunk(session_id=self.id, turn_id=0, seq=0, text=text, index=0, last=True)
        self._publish(TTS_REQUEST, chunk)

    def on_vad(self, msg: m.VadMsg, now: float) -> None:
        self.last_active = now
        if msg.turn_id < self._user.started or msg.turn_id <= self._user.final:
            self._drop(VAD, "stale")
        elif isinstance(msg, m.SpeechStarted):
            self._user.started = msg.turn_id
        # SpeechEnded changes nothing here: the final transcript is what counts.

    def on_transcript(self, msg: m.TranscriptMsg, now: float, channel: Channel) -> None:
        self.last_active = now
        if msg.turn_id <= self._user.final:
            self._drop(channel, "stale")
        elif isinstance(msg, m.TranscriptFinal):
            self._on_final(msg, now)

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
        self._user.finalize(msg.turn_id)
        text = msg.text.strip()
        if not text:
            return  # noise or a cough: whatever the agent was doing goes on
        self._supersede(now)
        self._history.add_user(msg.turn_id, text)
        self._open(Reply(msg.turn_id, now))
        system = m.ChatMessage("system", self._config.system_prompt)
        request = m.LlmRequest(
            session_id=self.id,
            turn_id=msg.turn_id,
            seq=0,
            messages=[system, *self._history.messages()],
            max_tokens=self._config.max_tokens,
        )
        self._publish(LLM_REQUEST, request)

    def _supersede(self, now: float) -> None:
        """A newer utterance replaces the reply in progress, whatever its phase."""
        reply = self._reply
        if reply is None:
            return
        self._cancel(reply, "superseded")
        self._reply = None
        if reply.phase is Phase.PLAYING:
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
