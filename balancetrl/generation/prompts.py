"""Prompt rendering: a conversation (and its tools) up to an open assistant turn, through the training chat
template, exactly as training renders it."""

from __future__ import annotations

from collections.abc import Sequence

from .base import Conversation, Tools


def render_prompt_texts(
    tokenizer,
    prompts: Sequence[Conversation],
    tools: Sequence[Tools] | None = None,
    chat_template: str | None = None,
    chat_template_kwargs: dict | None = None,
) -> list[str]:
    """Each conversation rendered as text, ending in the generation prompt of the assistant turn."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor carries its tokenizer
    tools = [None] * len(prompts) if tools is None else tools
    return [
        tokenizer.apply_chat_template(
            conversation,
            tools=conversation_tools or None,
            chat_template=chat_template,
            add_generation_prompt=True,
            tokenize=False,
            **(chat_template_kwargs or {}),
        )
        for conversation, conversation_tools in zip(prompts, tools, strict=True)
    ]


def tokenize_prompt_texts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of rendered prompts. The template already wrote any BOS it wants; the tokenizer must not add a
    second one."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def render_prompts(
    tokenizer,
    prompts: Sequence[Conversation],
    tools: Sequence[Tools] | None = None,
    chat_template: str | None = None,
    chat_template_kwargs: dict | None = None,
) -> list[list[int]]:
    """Token ids of each conversation rendered up to an open assistant turn, exactly as training renders it."""
    texts = render_prompt_texts(tokenizer, prompts, tools, chat_template, chat_template_kwargs)
    return tokenize_prompt_texts(tokenizer, texts)
