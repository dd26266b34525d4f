"""LLM2Vec's MNTP pieces against LLM2Vec's own machinery: transformers' masking collator (as
LLM2Vec's run_mntp.py sets it up), the causal-LM loss its MNTP models inherit, and the LM head
of ``AutoModelForCausalLM``."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFWriter
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    PreTrainedTokenizerBase,
)

from llmvec import Encoder
from llmvec.backends.transformers import TransformersBackend
from llmvec.models import resolve_model
from llmvec.training.mntp import (
    DEFAULT_MASK_PROBABILITY,
    IGNORE_INDEX,
    MASK_TOKEN_CHOICES,
    LMHead,
    mask_batch,
    mask_token_id,
    mntp_loss,
)

TEXTS = [
    "A man is playing a guitar.",
    "The cat sat on the mat, and the dog slept by the door all afternoon.",
    "Paris is the capital and largest city of France.",
    "Scientists found that proteins fold; stock markets fell 3% on Monday!",
    "snake_case names, like max_length, keep their underscores.",
]


@pytest.fixture(scope="module")
def tokenizer(smollm2: Encoder) -> PreTrainedTokenizerBase:
    """SmolLM2's real tokenizer (from its packaged GGUF file)."""
    return smollm2.backend.tokenizer  # type: ignore[attr-defined, no-any-return]


def llm2vec_tokenizer(tokenizer: PreTrainedTokenizerBase, choice: str) -> PreTrainedTokenizerBase:
    """A copy of ``tokenizer`` set up as LLM2Vec's run_mntp.py sets up its own."""
    prepared = copy.deepcopy(tokenizer)
    if prepared.mask_token is None:
        prepared.mask_token = {"blank": "_", "eos": prepared.eos_token}[choice]
    if prepared.pad_token is None:
        prepared.pad_token = prepared.eos_token
    return prepared


def with_specials(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Each text's ids between explicit BOS and EOS, as llmvec's inputs add them."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    return [[bos, *tokenizer(text).input_ids, eos] for text in texts]


def padded(
    tokenizer: PreTrainedTokenizerBase, rows: list[list[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask."""
    length = max(map(len, rows))
    ids = torch.full((len(rows), length), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, tokens in enumerate(rows):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    return ids, mask


@pytest.mark.parametrize("choice", ["blank", "eos"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masking_equals_llm2vec_collator(
    tokenizer: PreTrainedTokenizerBase, choice: str, seed: int
) -> None:
    prepared = llm2vec_tokenizer(tokenizer, choice)
    collator = DataCollatorForLanguageModeling(
        tokenizer=prepared, mlm_probability=DEFAULT_MASK_PROBABILITY, seed=seed
    )
    rows = with_specials(tokenizer, TEXTS * 4)
    reference = collator([{"input_ids": row} for row in rows])

    original = prepared.pad({"input_ids": rows}, return_tensors="pt")  # the collator's padding

    mask_id = mask_token_id(tokenizer, choice)
    assert mask_id == prepared.mask_token_id
    # The collator's fallback marks every special token of its tokenizer, where LLM2Vec's mask
    # token is one: "_" too, for "blank".
    masked, labels = mask_batch(
        original["input_ids"],
        original["attention_mask"],
        tokenizer,
        mask_id=mask_id,
        generator=torch.Generator().manual_seed(seed),
        special_ids={mask_id},
    )
    assert torch.equal(masked, reference["input_ids"])
    assert torch.equal(labels, reference["labels"])
    assert (labels != IGNORE_INDEX).any()


def test_masking_rule_over_a_large_batch(tokenizer: PreTrainedTokenizerBase) -> None:
    texts = with_specials(tokenizer, [text for text in TEXTS if "_" not in text])
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 20, (4000,), generator=generator).tolist()
    # Rows of different lengths: a cut of a text's ids, with explicit BOS and EOS.
    rows = [texts[row % len(texts)][:n] + texts[0][-1:] for row, n in enumerate(lengths)]
    ids, attention = padded(tokenizer, rows)
    mask_id = mask_token_id(tokenizer)
    masked, labels = mask_batch(ids, attention, tokenizer, mask_id=mask_id, generator=generator)

    selected = labels != IGNORE_INDEX
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    eligible = attention.bool() & ~special
    assert special[:, 0].all() and (attention == 0).any()
    assert not (selected & ~eligible).any()  # never padding, BOS, EOS
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])
    assert abs(selected.sum().item() / eligible.sum().item() - 0.2) < 0.02

    count = selected.sum().item()
    to_mask = selected & (masked == mask_id)
    unchanged = selected & (masked == ids)
    to_random = selected & ~to_mask & ~unchanged
    assert abs(to_mask.sum().item() / count - 0.8) < 0.03
    assert abs(to_random.sum().item() / count - 0.1) < 0.02
    assert abs(unchanged.sum().item() / count - 0.1) < 0.02
    assert int(masked.max()) < len(tokenizer)

    again = mask_batch(
        ids, attention, tokenizer, mask_id=mask_id, generator=torch.Generator().manual_seed(5)
    )
    same = mask_batch(
        ids, attention, tokenizer, mask_id=mask_id, generator=torch.Generator().manual_seed(5)
    )
    assert all(torch.equal(a, b) for a, b in zip(again, same, strict=True))


def test_masking_rejects_bad_input(tokenizer: PreTrainedTokenizerBase) -> None:
    ids = torch.ones((2, 3), dtype=torch.long)
    with pytest.raises(ValueError, match="same shape"):
        mask_batch(ids, ids[:, :2], tokenizer, mask_id=0)
    with pytest.raises(ValueError, match="probability"):
        mask_batch(ids, ids, tokenizer, mask_id=0, probability=1.5)


def looped_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per position: the cross-entropy of position i - 1's logits for the label at i."""
    losses = []
    for row in range(labels.shape[0]):
        for position in range(1, labels.shape[1]):
            label = int(labels[row, position])
            if label != IGNORE_INDEX:
                prediction = logits[row, position - 1].float()
                losses.append(-torch.log_softmax(prediction, dim=-1)[label])
    return torch.stack(losses).mean()


def test_loss_equals_the_shifted_per_position_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn((3, 7, 11), generator=generator)
    labels = torch.randint(11, (3, 7), generator=generator)
    labels[torch.rand((3, 7), generator=generator) < 0.5] = IGNORE_INDEX
    labels[:, 0] = 4
    expected = looped_loss(logits, labels)
    torch.testing.assert_close(mntp_loss(logits, labels), expected)

    # The label at position 0 and the logits at the last position are never read.
    changed_labels, changed_logits = labels.clone(), logits.clone()
    changed_labels[:, 0] = IGNORE_INDEX
    changed_logits[:, -1] = 100.0
    torch.testing.assert_close(mntp_loss(changed_logits, changed_labels), expected)

    half = logits.bfloat16()
    loss = mntp_loss(half, labels)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, looped_loss(half.float(), labels))

    nothing = torch.full_like(labels, IGNORE_INDEX)
    assert mntp_loss(logits, nothing).item() == 0.0
    with pytest.raises(ValueError, match="labels"):
        mntp_loss(logits, labels[:, :-1])


def test_loss_equals_the_causal_lm_loss_llm2vec_trains_with(tiny_llama: Path) -> None:
    """LLM2Vec's MNTP models (``LlamaBiForMNTP``...) inherit ``LlamaForCausalLM``'s loss."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    causal = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    ids, attention = padded(tokenizer, [tokenizer(text).input_ids for text in TEXTS])
    masked, labels = mask_batch(
        ids,
        attention,
        tokenizer,
        mask_id=mask_token_id(tokenizer, "eos"),
        probability=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        output = causal(input_ids=masked, attention_mask=attention, labels=labels)
    torch.testing.assert_close(mntp_loss(output.logits, labels), output.loss)


def test_mask_token_id(tokenizer: PreTrainedTokenizerBase) -> None:
    blank = mask_token_id(tokenizer, "blank")
    assert blank == tokenizer.convert_tokens_to_ids("_") == mask_token_id(tokenizer)
    assert tokenizer.decode([blank]) == "_"
    assert mask_token_id(tokenizer, "eos") == tokenizer.eos_token_id
    with pytest.raises(ValueError, match=r"\['blank', 'eos', 'mask'\]") as error:
        mask_token_id(tokenizer, "mask")
    assert "no" in str(error.value)
    with pytest.raises(ValueError, match="unknown mask token 'hole'") as error:
        mask_token_id(tokenizer, "hole")
    assert str(list(MASK_TOKEN_CHOICES)) in str(error.value)


def test_mask_token_id_prefers_the_tokenizers_own() -> None:
    bert = AutoTokenizer.from_pretrained(resolve_model("all-minilm-l6-v2").name_or_path)
    assert bert.mask_token == "[MASK]"
    for choice in MASK_TOKEN_CHOICES:
        assert mask_token_id(bert, choice) == bert.mask_token_id


def tiny_config(arch: str, **overrides: object) -> object:
    return AutoConfig.for_model(
        arch,
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        **overrides,
    )


def head_logits_match(folder: Path, head: LMHead, backbone: torch.nn.Module) -> None:
    """``head`` over ``backbone``'s final states equals ``AutoModelForCausalLM``'s logits."""
    causal = AutoModelForCausalLM.from_pretrained(folder).eval()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(int(causal.config.vocab_size), (2, 9), generator=generator)
    with torch.no_grad():
        expected = causal(input_ids=ids).logits
        got = head(backbone(input_ids=ids).last_hidden_state)
    torch.testing.assert_close(got, expected)


def test_tied_head_shares_the_embedding(tiny_llama: Path) -> None:
    backbone = AutoModel.from_pretrained(tiny_llama).eval()
    head = LMHead.for_model(backbone)
    embedding = backbone.get_input_embeddings().weight
    assert head.weight is embedding
    assert head.weight.data_ptr() == embedding.data_ptr()
    head_logits_match(tiny_llama, head, backbone)


@pytest.mark.parametrize("shard", [None, "40KB"])
def test_untied_head_reads_lm_head_from_safetensors(tmp_path: Path, shard: str | None) -> None:
    torch.manual_seed(1)
    causal = AutoModelForCausalLM.from_config(tiny_config("llama", tie_word_embeddings=False))
    causal.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    assert (tmp_path / "model.safetensors.index.json").is_file() == (shard is not None)
    backbone = AutoModel.from_pretrained(tmp_path).eval()
    head = LMHead.for_model(backbone)
    assert not head.weight.requires_grad
    assert head.weight.data_ptr() != backbone.get_input_embeddings().weight.data_ptr()
    torch.testing.assert_close(head.weight, causal.lm_head.weight.detach())
    head_logits_match(tmp_path, head, backbone)


def test_untied_head_reads_output_weight_from_gguf(tmp_path: Path) -> None:
    torch.manual_seed(2)
    causal = AutoModelForCausalLM.from_config(tiny_config("llama", tie_word_embeddings=False))
    causal.save_pretrained(tmp_path / "model")
    writer = GGUFWriter(str(tmp_path / "head.gguf"), "llama")
    writer.add_tensor("output.weight", causal.lm_head.weight.detach().numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    backbone = AutoModel.from_pretrained(tmp_path / "model").eval()
    head = LMHead.for_model(backbone, location=str(tmp_path / "head.gguf"))
    head_logits_match(tmp_path / "model", head, backbone)


def test_untied_head_missing_is_a_clear_error(tmp_path: Path) -> None:
    AutoModel.from_config(tiny_config("llama", tie_word_embeddings=False)).save_pretrained(tmp_path)
    backbone = AutoModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"holds no 'lm_head\.weight'"):
        LMHead.for_model(backbone)


def test_head_applies_gemma2_soft_capping(tmp_path: Path) -> None:
    torch.manual_seed(3)
    config = tiny_config("gemma2", final_logit_softcapping=0.5, tie_word_embeddings=True)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    backbone = AutoModel.from_pretrained(tmp_path).eval()
    head = LMHead.for_model(backbone)
    assert head.softcap == 0.5
    head_logits_match(tmp_path, head, backbone)


def test_backward_reaches_the_embedding(tiny_llama: Path) -> None:
    """One MNTP step on llmvec's own backend: finite gradients for the (tied) embedding."""
    backend = TransformersBackend(str(tiny_llama), device="cpu", dtype="float32")
    embedding = backend.model.get_input_embeddings().weight
    embedding.requires_grad_(True)
    tokenizer = backend.tokenizer
    ids, attention = padded(tokenizer, [tokenizer(text).input_ids for text in TEXTS])
    masked, labels = mask_batch(
        ids,
        attention,
        tokenizer,
        mask_id=mask_token_id(tokenizer, "eos"),
        generator=torch.Generator().manual_seed(0),
    )
    head = LMHead.for_model(backend.model)
    states = backend.hidden_states(masked, attention, backend.num_layers)
    loss = mntp_loss(head(states), labels)
    loss.backward()
    assert embedding.grad is not None
    assert torch.isfinite(embedding.grad).all() and embedding.grad.abs().sum() > 0
    assert torch.isfinite(loss) and loss.item() > 0
