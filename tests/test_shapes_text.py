"""Captions of the embedded world and the CLIP-style tokenizer learned on them."""

import numpy as np
import pytest

from dreamfusion_jax.nerf import camera as camera_lib
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import tokenizer as tokenizer_lib


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("tokenizer"))
  tokenizer_lib.save_tokenizer(directory, captions.caption_table())
  return tokenizer_lib.load_tokenizer(directory)  # transformers.CLIPTokenizer.from_pretrained


def test_caption_table_layout_matches_caption_index():
  table = captions.caption_table()
  colours = captions.COLOUR_NAMES + (None,)
  views = camera_lib.VIEW_NAMES + (None,)
  assert len(table) == len(captions.SHAPES) * len(colours) * len(views) + 1
  assert table[-1] == captions.EMPTY
  for s, shape in enumerate(captions.SHAPES):
    for c, colour in enumerate(colours):
      for v, view in enumerate(views):
        assert table[captions.caption_index(s, c, v)] == captions.caption(shape, colour, view)


def test_view_prompts_use_the_distillation_step_format():
  assert captions.caption("cube", "red", "side") == "a red cube, side view"
  assert captions.caption("cube", "orange") == "an orange cube"
  assert captions.view_prompt("a red cube", "overhead") == "a red cube, overhead view"


def test_prompt_set_is_every_shape_and_colour_and_parses_back():
  prompts = captions.prompt_set()
  assert len(prompts) == len(set(prompts)) == len(captions.SHAPES) * len(captions.COLOUR_NAMES)
  parsed = {captions.parse_prompt(p) for p in prompts}
  assert parsed == {(s, c) for s in captions.SHAPES for c in captions.COLOUR_NAMES}


@pytest.mark.parametrize("bad", [dict(shape="pyramid"), dict(shape="cube", colour="teal"),
                                 dict(shape="cube", view="left")])
def test_unknown_names_raise(bad):
  with pytest.raises(ValueError, match=next(iter(bad)) if len(bad) == 1 else list(bad)[-1]):
    captions.caption(**bad)


def test_every_caption_word_is_one_token_and_round_trips(tok):
  vocab = tok.get_vocab()
  for text in captions.caption_table()[:-1]:
    ids = tok(text).input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    words = text.replace(",", " ,").split()
    assert tok.convert_ids_to_tokens(ids[1:-1]) == [w + "</w>" for w in words]
    assert all(w + "</w>" in vocab for w in words)
    # CLIP's decoder puts a space before punctuation; undo that to compare.
    assert tok.decode(ids, skip_special_tokens=True).replace(" ,", ",") == text


def test_any_text_tokenizes_without_unknowns(tok):
  ids = tok("A DSLR photo of a corgi! 123").input_ids
  assert tok.unk_token_id not in ids[1:-1]
  assert tok.decode(ids, skip_special_tokens=True).replace(" !", "!") == "a dslr photo of a corgi! 1 2 3"


def test_encode_pads_to_77_with_eos(tok):
  ids = tokenizer_lib.encode(tok, ["a red cube", ""])
  assert ids.shape == (2, 77) and ids.dtype == np.int32
  np.testing.assert_array_equal(ids[1, 1:], tok.eos_token_id)
  assert tok.pad_token == tokenizer_lib.EOS and tok.bos_token == tokenizer_lib.BOS
