"""Judges our LoRA/QLoRA against Hugging Face peft + transformers, and our NF4 against bitsandbytes.

Run where torch, transformers, peft and (for QLoRA, on CUDA) bitsandbytes are installed:  python3 compare.py OUTDIR
OUTDIR holds what `dotnet run --project tools/PeftParity -- OUTDIR` wrote. Exits non-zero on any mismatch.
"""
import base64, json, os, sys
import numpy as np
import torch
from transformers import MistralForCausalLM
from peft import PeftModel

out = sys.argv[1] if len(sys.argv) > 1 else "peft-parity"
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
failures = 0
import transformers, peft
print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__,
      "cuda", torch.cuda.is_available())
base = os.path.join(out, "base")


def judge_logits(name, model, ours, device):
    global failures
    for case in ours["cases"]:
        ids = torch.tensor([case["ids"]], device=device)
        with torch.no_grad():
            logits = model(ids).logits[0].float().cpu().double().numpy()
        mine = np.array(case["logits"], dtype=np.float64).reshape(len(case["ids"]), case["vocab"])
        diff = np.abs(logits - mine).max()
        same_argmax = (logits.argmax(-1) == mine.argmax(-1)).all()
        ok = diff < 1e-3 and same_argmax
        failures += 0 if ok else 1
        print(f"{name:6s} tokens={len(case['ids']):3d} max_abs_logit_diff={diff:.2e} (max |logit| {np.abs(logits).max():.1f}) "
              f"argmax_equal={same_argmax} {'OK' if ok else 'MISMATCH'}")


# 1. Plain LoRA: transformers float32 base + peft's LoraModel loading our adapter folder.
ours = json.load(open(os.path.join(out, "lora.ours.json")))
model = MistralForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="eager").eval()
model = PeftModel.from_pretrained(model, os.path.join(out, "adapter-lora")).eval()
judge_logits("lora", model, ours, "cpu")

# 2. QLoRA: bitsandbytes NF4 (double quant, float32 compute) + peft, and our NF4 bytes against quantize_4bit's.
ours = json.load(open(os.path.join(out, "qlora.ours.json")))
try:
    import bitsandbytes as bnb
    from bitsandbytes.functional import quantize_4bit
    from transformers import BitsAndBytesConfig
    have_bnb = torch.cuda.is_available()
except ImportError as e:
    have_bnb = False
    print("bitsandbytes unavailable:", e)
if not have_bnb:
    print("QLoRA parity skipped: needs bitsandbytes and CUDA")
else:
    print("bitsandbytes", bnb.__version__)
    from safetensors.torch import load_file
    weights = load_file(os.path.join(base, "model.safetensors"))
    for entry in ours["nf4"]:
        w = weights[entry["name"] + ".weight"].to(torch.float32).cuda()
        packed, state = quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4", quant_storage=torch.uint8)
        theirs_packed = packed.flatten().cpu().numpy().tobytes()
        theirs_codes = state.absmax.flatten().cpu().numpy().astype(np.uint8).tobytes()
        theirs_scales = state.state2.absmax.flatten().float().cpu().numpy()
        mine_packed = base64.b64decode(entry["packed"])
        mine_codes = base64.b64decode(entry["absmax_codes"])[: len(theirs_codes)]
        mine_scales = np.array(entry["absmax_scales"], dtype=np.float32)[: len(theirs_scales)]
        packed_diff = sum(a != b for a, b in zip(mine_packed, theirs_packed))
        codes_diff = sum(a != b for a, b in zip(mine_codes, theirs_codes))
        ok = (len(mine_packed) == len(theirs_packed) and packed_diff == 0 and codes_diff == 0
              and np.array_equal(mine_scales, theirs_scales) and np.float32(entry["offset"]) == np.float32(state.offset.item()))
        failures += 0 if ok else 1
        print(f"nf4    {entry['name']:36s} {len(mine_packed)} packed bytes, {packed_diff} differ; absmax codes {codes_diff} differ; "
              f"scales equal={np.array_equal(mine_scales, theirs_scales)} offset {entry['offset']:.9g} vs {state.offset.item():.9g} "
              f"{'OK' if ok else 'MISMATCH'}")
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=torch.float32)
    model = MistralForCausalLM.from_pretrained(base, dtype=torch.float32, quantization_config=config,
                                               attn_implementation="eager", device_map={"": 0}).eval()
    model = PeftModel.from_pretrained(model, os.path.join(out, "adapter-qlora")).eval()
    judge_logits("qlora", model, ours, "cuda")
print("FAILURES:", failures)
sys.exit(1 if failures else 0)
