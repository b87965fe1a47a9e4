"""Chat formats: how a list of chat messages becomes the prompt text a checkpoint was trained on.

Each checkpoint has one format: the lab's 9M model its own (``<|user|>...<|end|>``), SmolLM2 the ChatML template
of its GGUF, which opens with a default system message when the conversation has none.

>>> print(CHATML_SMOLLM2.render([{"role": "user", "content": "Hi"}]))
<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
<|im_start|>user
Hi<|im_end|>
<|im_start|>assistant
<BLANKLINE>
>>> LAB_CHAT.render([{"role": "user", "content": "Hi"}])
'<|user|>Hi<|end|>\\n<|assistant|>'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from parity._exceptions import InvalidInputError

__all__ = ["CHATML_SMOLLM2", "LAB_CHAT", "ROLES", "ChatFormat"]

#: the chat roles every format accepts.
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatFormat:
    """A chat template: per-role turn openings, the turn closing, the generation prompt and the stop tokens.

    ``default_system`` (when not None) is prepended as a system turn to conversations that do not start with one,
    as SmolLM2's template does. ``stop_tokens`` end a generation (they are special tokens of the tokenizer).
    """

    name: str
    turn_open: Mapping[str, str]
    turn_close: str
    generation_prompt: str
    stop_tokens: tuple[str, ...]
    default_system: str | None = None

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt text for ``messages`` (each ``{"role": system|user|assistant, "content": str}``)."""
        turns = list(messages)
        if self.default_system is not None and (not turns or turns[0].get("role") != "system"):
            turns.insert(0, {"role": "system", "content": self.default_system})
        parts = []
        for index, message in enumerate(turns):
            role = message.get("role") if isinstance(message, Mapping) else None
            if not isinstance(role, str) or role not in self.turn_open:
                raise InvalidInputError(f"messages[{index}].role", f"must be one of {sorted(self.turn_open)}", role)
            content = message.get("content", "")
            if not isinstance(content, str):
                raise InvalidInputError(f"messages[{index}].content", "must be a string", type(content).__name__)
            parts.append(f"{self.turn_open[role]}{content}{self.turn_close}")
        return "".join(parts) + self.generation_prompt

    @property
    def system_prefix(self) -> str:
        """The text every conversation without its own system message starts with ("" without a default)."""
        if self.default_system is None:
            return ""
        return f"{self.turn_open['system']}{self.default_system}{self.turn_close}"


#: the lab 9M model's format (its training data's chat turns).
LAB_CHAT = ChatFormat(
    name="parity-lab",
    turn_open={"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"},
    turn_close="<|end|>\n",
    generation_prompt="<|assistant|>",
    stop_tokens=("<|endoftext|>", "<|end|>"),
)

#: SmolLM2-Instruct's ChatML template, as its GGUF's ``tokenizer.chat_template`` writes it.
CHATML_SMOLLM2 = ChatFormat(
    name="chatml",
    turn_open={role: f"<|im_start|>{role}\n" for role in ROLES},
    turn_close="<|im_end|>\n",
    generation_prompt="<|im_start|>assistant\n",
    stop_tokens=("<|im_end|>", "<|endoftext|>"),
    default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
)
