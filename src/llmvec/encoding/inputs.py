"""Text -> token ids, with the template applied, the text (never the template) truncated,
explicit special tokens, and the index where pooling may start.

The whole string (instruction + template + text) is tokenized at once, exactly as a reference
implementation would, and character offsets tell which tokens belong to the instruction.

A text far longer than the token budget is not tokenized whole: its first characters are, in a
window that must hold more tokens than the budget (grown until it does, since a normalizer may
drop characters), and the text is cut from the window's tokens. The ids are those of the whole
text: tokens are decided by the characters around them, so a window's tokens are the whole
text's except at its end, where a margin of tokens is never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from transformers import PreTrainedTokenizerBase

from llmvec.backends.base import TokenizedText
from llmvec.encoding.templates import NO_TEMPLATE, Wrapper

#: Characters a token is assumed to cover at most, whatever its vocabulary's longest string.
MIN_CHARS_PER_TOKEN = 16
#: Tokens at the end of a window that may come out otherwise in the whole text (a word cut in
#: two): a window holds this many beyond what the prompt keeps, and they are never read.
WINDOW_MARGIN_TOKENS = 16


class _Cut(NamedTuple):
    """How to cut a text that does not fit: its own tokens' character offsets, and how many of
    them the first cut keeps."""

    offsets: list[tuple[int, int]]
    keep: int


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
        special_tokens: ``False`` leaves out the tokenizer's own special tokens (a static model).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_length: int,
        add_bos: bool | None = None,
        pool_prefix_specials: bool = False,
        special_tokens: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        specials = SpecialTokens.probe(tokenizer) if special_tokens else SpecialTokens([], [])
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
        # At most the characters of the longest token string, unless a normalizer drops some.
        longest = max((len(token) for token in tokenizer.get_vocab()), default=0)
        self._chars_per_token = max(MIN_CHARS_PER_TOKEN, longest)

    def _tokenize(
        self, texts: Sequence[str]
    ) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
        if not texts:
            return [], []
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
        window = self._chars_per_token * (budget + WINDOW_MARGIN_TOKENS + 1)
        cuts = self._windowed_cuts(texts, head, template.suffix, budget, window)
        whole = [row for row in range(len(texts)) if row not in cuts]
        ids: list[list[int]] = [[] for _ in texts]
        offsets: list[list[tuple[int, int]]] = [[] for _ in texts]
        whole_ids, whole_offsets = self._tokenize(
            [prefix + template.apply(texts[row]) for row in whole]
        )
        for row, row_ids, row_offsets in zip(whole, whole_ids, whole_offsets, strict=True):
            ids[row], offsets[row] = row_ids, row_offsets
        long = [row for row in whole if len(ids[row]) > budget]
        alone_ids, alone_offsets = self._tokenize([texts[row] for row in long])
        for row, row_ids, row_offsets in zip(long, alone_ids, alone_offsets, strict=True):
            # The first cut drops as many tokens as the prompt is over.
            cuts[row] = _Cut(row_offsets, max(len(row_ids) - (len(ids[row]) - budget), 0))
        truncated = self._truncate(texts, cuts, prefix, template, budget)
        for row, (row_ids, row_offsets) in truncated.items():
            ids[row], offsets[row] = row_ids, row_offsets
        results = []
        for row, (text_ids, text_offsets) in enumerate(zip(ids, offsets, strict=True)):
            # A token belongs to the instruction when it ends inside the instruction's characters;
            # one that straddles the boundary ("▁word" after "Query:") carries text and is pooled.
            pool_start = sum(1 for _, end in text_offsets if end <= len(prefix)) if prefix else 0
            body = self.prefix_ids + list(text_ids) + closing
            if not body:
                body = [self.pad_token_id if self.eos_token_id is None else self.eos_token_id]
            skipped = len(self.prefix_ids) if not self.pool_prefix_specials or prefix else 0
            pool_from = min(skipped + pool_start, len(body) - 1)
            no_text = len(text_ids) <= pool_start and not template.prefix + template.suffix
            results.append(
                TokenizedText(body, pool_from, truncated=row in truncated, no_text=no_text)
            )
        return results

    def head_ids(self, prefix: str, template: Wrapper) -> list[int]:
        """Ids of what comes before every text: leading specials, instruction, template start."""
        head = prefix + template.prefix
        return self.prefix_ids + (self._tokenize([head])[0][0] if head else [])

    def _windowed_cuts(
        self, texts: Sequence[str], head: str, suffix: str, budget: int, window: int
    ) -> dict[int, _Cut]:
        """Per text longer than ``window`` characters whose prompt cannot fit ``budget``, its
        :class:`_Cut` as tokenizing it whole would give, read from a window at its start.

        A window is kept once it holds more tokens (margin aside) than the prompt keeps, and is
        doubled otherwise; a text the window grows to cover has no entry (it is tokenized whole).
        The first cut keeps ``budget`` less the tokens that the instruction and template add to
        the text's own: at its start (read on the window) and at its end (on its last
        characters). Each round tokenizes all the windows it reads in one call."""
        pending = [row for row, text in enumerate(texts) if len(text) > window]
        tail = self._chars_per_token * WINDOW_MARGIN_TOKENS
        ends = [texts[row][-tail:] for row in pending]
        end_ids, _ = self._tokenize([*ends, *(end + suffix for end in ends)])
        added_at_end = {
            row: len(end_ids[len(ends) + index]) - len(end_ids[index])
            for index, row in enumerate(pending)
        }
        cuts: dict[int, _Cut] = {}
        while pending:
            windows = [texts[row][:window] for row in pending]
            ids, offsets = self._tokenize([*windows, *(head + start for start in windows)])
            short = []
            for index, row in enumerate(pending):
                own = ids[index]
                added = len(ids[len(pending) + index]) - len(own) + added_at_end[row]
                if len(own) - WINDOW_MARGIN_TOKENS + added > budget:
                    cuts[row] = _Cut(offsets[index], max(budget - added, 0))
                else:
                    short.append(row)
            window *= 2
            pending = [row for row in short if len(texts[row]) > window]
        return cuts

    def _truncate(
        self,
        texts: Sequence[str],
        cuts: dict[int, _Cut],
        prefix: str,
        template: Wrapper,
        budget: int,
    ) -> dict[int, tuple[list[int], list[tuple[int, int]]]]:
        """Ids and offsets of each prompt that ``cuts`` names, its text cut at the end of one of
        the text's own tokens so that the prompt fits ``budget``. The first cut keeps the tokens
        its :class:`_Cut` says; a prompt still too long (tokens merge differently at the cut)
        drops one more, until it fits. Each round tokenizes all the prompts it cuts in one
        call."""
        keep = {row: cut.keep for row, cut in cuts.items()}
        done: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}
        pending = list(cuts)
        while pending:
            cut_texts = [
                texts[row][: cuts[row].offsets[keep[row] - 1][1]] if keep[row] else ""
                for row in pending
            ]
            ids, offsets = self._tokenize([prefix + template.apply(text) for text in cut_texts])
            too_long = []
            for row, row_ids, row_offsets in zip(pending, ids, offsets, strict=True):
                if len(row_ids) <= budget or keep[row] == 0:
                    done[row] = (row_ids, row_offsets)
                else:
                    keep[row] -= 1
                    too_long.append(row)
            pending = too_long
        return done
