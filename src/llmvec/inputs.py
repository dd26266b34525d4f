"""Text -> token ids, with the template applied, the text (never the template) truncated,
explicit special tokens, and the index where pooling may start.

The whole string (instruction + template + text) is tokenized at once, exactly as a reference
implementation would, and character offsets tell which tokens belong to the instruction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from llmvec.templates import NO_TEMPLATE, Wrapper


@dataclass(frozen=True)
class TokenizedText:
    """Token ids of one input and the first index that pooling may read."""

    ids: list[int]
    pool_start: int


@dataclass(frozen=True)
class SpecialTokens:
    """The special tokens a tokenizer puts around a text by its own convention."""

    prefix: list[int]
    suffix: list[int]

    @classmethod
    def probe(cls, tokenizer: PreTrainedTokenizerBase) -> SpecialTokens:
        """Find them by tokenizing a probe with and without special tokens."""
        probe = "hello"
        bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
        full = tokenizer(probe)["input_ids"]
        for start in range(len(full) - len(bare) + 1):
            if full[start : start + len(bare)] == bare:
                return cls(list(full[:start]), list(full[start + len(bare) :]))
        raise ValueError(
            f"cannot tell the special tokens of {type(tokenizer).__name__}: {full} does not "
            f"contain {bare}"
        )


class InputBuilder:
    """Builds :class:`TokenizedText` for the encoder.

    Args:
        tokenizer: a fast tokenizer (offsets are needed).
        max_length: total token budget per input, special tokens included.
        add_bos: ``None`` keeps the tokenizer's own convention (probed); ``True``/``False``
            force it.
        pool_prefix_specials: whether the leading special tokens (BERT's CLS) may be pooled.
            Decoder models say no: their BOS state is an attention sink, the same for every input.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_length: int,
        add_bos: bool | None = None,
        pool_prefix_specials: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        specials = SpecialTokens.probe(tokenizer)
        bos = tokenizer.bos_token_id
        if add_bos is True and bos is None:
            raise ValueError("add_bos=True but the tokenizer has no BOS token")
        prefix = list(specials.prefix)
        if add_bos is True and bos not in prefix:
            prefix = [bos, *prefix]
        elif add_bos is False:
            prefix = [token for token in prefix if token != bos]
        self.prefix_ids = prefix
        self.suffix_ids = list(specials.suffix)
        self.pool_prefix_specials = pool_prefix_specials
        eos = tokenizer.eos_token_id
        self.eos_token_id: int | None = eos if eos is not None else tokenizer.sep_token_id
        pad = tokenizer.pad_token_id
        self.pad_token_id: int = pad if pad is not None else (self.eos_token_id or 0)

    def _tokenize(
        self, texts: Sequence[str]
    ) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
        encoded = self.tokenizer(
            list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        return encoded["input_ids"], encoded["offset_mapping"]

    def build(
        self,
        texts: Sequence[str],
        *,
        prefix: str = "",
        template: Wrapper = NO_TEMPLATE,
        append_eos: bool = False,
    ) -> list[TokenizedText]:
        """Tokenize ``prefix + template(text)`` for each text.

        ``prefix`` (an instruction) conditions the text but is kept out of pooling. When an input
        is longer than ``max_length``, the text is cut at a token boundary and the template and
        instruction stay whole.
        """
        closing = list(self.suffix_ids)
        if append_eos:
            if self.eos_token_id is None:
                raise ValueError("eos_token pooling needs an EOS token, and the tokenizer has none")
            if not closing or closing[-1] != self.eos_token_id:
                closing.append(self.eos_token_id)
        budget = self.max_length - len(self.prefix_ids) - len(closing)
        head = prefix + template.prefix
        fixed_ids, _ = self._tokenize([head + template.suffix])
        if len(fixed_ids[0]) >= budget:
            raise ValueError(
                f"max_length={self.max_length} leaves no room for text: the instruction and "
                f"template alone take {len(fixed_ids[0]) + len(self.prefix_ids) + len(closing)} "
                "tokens"
            )
        ids, offsets = self._tokenize([prefix + template.apply(text) for text in texts])
        long = [row for row, row_ids in enumerate(ids) if len(row_ids) > budget]
        if long:
            over = [len(ids[row]) - budget for row in long]
            cut = self._truncate([texts[row] for row in long], over, prefix, template, budget)
            for row, (row_ids, row_offsets) in zip(long, cut, strict=True):
                ids[row], offsets[row] = row_ids, row_offsets
        results = []
        for text_ids, text_offsets in zip(ids, offsets, strict=True):
            # A token belongs to the instruction when it ends inside the instruction's characters;
            # one that straddles the boundary ("▁word" after "Query:") carries text and is pooled.
            pool_start = sum(1 for _, end in text_offsets if end <= len(prefix)) if prefix else 0
            body = self.prefix_ids + list(text_ids) + closing
            if not body:
                body = [self.pad_token_id if self.eos_token_id is None else self.eos_token_id]
            skipped = len(self.prefix_ids) if not self.pool_prefix_specials or prefix else 0
            results.append(TokenizedText(body, min(skipped + pool_start, len(body) - 1)))
        return results

    def head_ids(self, prefix: str, template: Wrapper) -> list[int]:
        """Ids of what comes before every text: leading specials, instruction, template start."""
        head = prefix + template.prefix
        return self.prefix_ids + (self._tokenize([head])[0][0] if head else [])

    def _truncate(
        self, texts: list[str], over: list[int], prefix: str, template: Wrapper, budget: int
    ) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Ids and offsets of each prompt, its text cut at the end of one of the text's own
        tokens so that the prompt fits ``budget``. The first cut drops as many tokens as the prompt
        is ``over``; a prompt still too long (tokens merge differently at the cut) drops one more,
        until it fits. Each round tokenizes all the prompts it cuts in one call."""
        alone_ids, alone_offsets = self._tokenize(texts)
        keep = [max(len(ids) - extra, 0) for ids, extra in zip(alone_ids, over, strict=True)]
        cut: list[tuple[list[int], list[tuple[int, int]]]] = [([], [])] * len(texts)
        pending = list(range(len(texts)))
        while pending:
            cuts = {
                row: texts[row][: alone_offsets[row][keep[row] - 1][1]] if keep[row] else ""
                for row in pending
            }
            ids, offsets = self._tokenize([prefix + template.apply(cuts[row]) for row in pending])
            too_long = []
            for row, row_ids, row_offsets in zip(pending, ids, offsets, strict=True):
                if len(row_ids) <= budget or keep[row] == 0:
                    cut[row] = (row_ids, row_offsets)
                else:
                    keep[row] -= 1
                    too_long.append(row)
            pending = too_long
        return cut
