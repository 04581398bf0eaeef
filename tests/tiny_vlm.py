"""A tiny random SmolVLM for the vision tests: made with transformers from the
bundled model's tokenizer (a 2-layer vision tower at 64x64 pixels, a 2-layer
Llama), then converted by llama.cpp's pinned converter into a text GGUF and a
projector (``--mmproj``), as a user converts a real one.

Made once per test session (``vlm`` in tests/conftest.py) and shared by every
module that needs it: the safetensors directory is what the transformers engine
and the transformers reference load, the two GGUFs what llmkit's llama.cpp
engine and llama.cpp's own ``llama-server`` load.

Both transformers' processor and mtmd cut an image the same way (``TILE``): a
64x64 image is four 32x32 tiles, each 16 patches of 8x8 merged 2x2 into 4
embeddings, and the whole image at 32x32, with the same tokens around each
(``<fake_token_around_image><row_R_col_C>``, ``<global-img>``). Their resizing
filters differ, but an image of one colour resizes to the same pixels whatever
the filter, so the tests use such images and both references see the same."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from llmkit.models.bundled import bundled_model_path

#: Images are resized to IMAGE_SIZE on their longest edge and cut into tiles of
#: TILE pixels (the vision tower's size), plus the whole image at TILE (the
#: "global" one): a 64x64 image is 2x2 tiles and the global image, 5 of them.
IMAGE_SIZE = 64
TILE = 32
#: What one tile costs: 16 patches of 8x8 pixels merged 2x2 (scale factor 2).
TILE_TOKENS = 4
#: The tokens SmolVLM's processor and mtmd's idefics3 path put around an image.
SPECIAL = ["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"] + [
    f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)
]
# The bundled model's ChatML template (string contents, as llmkit renders them);
# the image marker sits inside the user turn's text.
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinyVlm:
    hf_dir: Path  # safetensors, tokenizer, processor: for transformers
    lm: Path  # the text model, GGUF F32
    mmproj: Path  # the projector, GGUF F32


def make_hf(out: Path, seed: int = 0) -> Path:
    """The model in safetensors, with its tokenizer and processor (float32 weights:
    the GGUFs are F32 too, so both references run the same numbers)."""
    import torch
    import transformers

    bundled = Path(bundled_model_path())
    tok = transformers.AutoTokenizer.from_pretrained(str(bundled.parent), gguf_file=bundled.name)
    tok.add_special_tokens({"additional_special_tokens": SPECIAL})
    tok.chat_template = TEMPLATE
    image_token_id = tok.convert_tokens_to_ids("<image>")
    text = dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        rms_norm_eps=1e-5, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False, initializer_range=0.2,
    )  # fmt: skip
    vision = dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        image_size=TILE, patch_size=8, initializer_range=0.2,
    )  # fmt: skip
    cfg = transformers.Idefics3Config(
        text_config=text, vision_config=vision, scale_factor=2, image_token_id=image_token_id,
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = transformers.Idefics3ForConditionalGeneration(cfg).to(torch.float32)
    model.save_pretrained(out)
    image_processor = transformers.Idefics3ImageProcessor(
        do_image_splitting=True,
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": TILE},
    )
    processor = transformers.Idefics3Processor(
        image_processor=image_processor, tokenizer=tok, image_seq_len=TILE_TOKENS,
        chat_template=TEMPLATE,
    )  # fmt: skip
    processor.save_pretrained(out)
    tok.save_pretrained(out)
    # The converter picks the text model's class from text_config's architectures,
    # as the published SmolVLM's config.json names it.
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["text_config"]["architectures"] = ["LlamaForCausalLM"]
    config_path.write_text(json.dumps(config, indent=2))
    return out


def convert(hf_dir: Path, out_dir: Path) -> TinyVlm:
    """The pinned converter, twice: the text model, then the projector."""
    from tests.llama_chat_cases import llama_cpp_dir

    script = llama_cpp_dir() / "convert_hf_to_gguf.py"
    lm, mmproj = out_dir / "lm.gguf", out_dir / "mmproj.gguf"
    for extra, dst in (([], lm), (["--mmproj"], mmproj)):
        cmd = [sys.executable, str(script), str(hf_dir), "--outfile", str(dst), "--outtype", "f32"]
        done = subprocess.run(cmd + extra, capture_output=True, text=True)
        if done.returncode != 0 or not dst.is_file():
            raise RuntimeError(f"converting the tiny SmolVLM failed:\n{done.stderr[-4000:]}")
    return TinyVlm(hf_dir, lm, mmproj)


def make(folder: Path) -> TinyVlm:
    """The model, made in ``folder`` (safetensors in ``folder/hf``, GGUFs beside)."""
    hf = make_hf(folder / "hf")
    return convert(hf, folder)


def png(rgb: tuple[int, int, int], size: int = IMAGE_SIZE) -> bytes:
    """A plain image of one colour, PNG-encoded."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (size, size), rgb).save(buf, "PNG")
    return buf.getvalue()


def image(rgb: tuple[int, int, int], size: int = IMAGE_SIZE):  # -> llmkit.core.types.Image
    """A core ``Image`` of one colour, as the API layer hands it to an engine."""
    import hashlib

    from llmkit.core.types import Image

    data = png(rgb, size)
    return Image(data, "image/png", hashlib.sha256(data).hexdigest(), size, size)


RED = (220, 30, 30)
BLUE = (30, 30, 220)

if __name__ == "__main__":  # make one by hand: python -m tests.tiny_vlm DIR
    made = make(Path(sys.argv[1]))
    print(made)
