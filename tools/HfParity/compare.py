"""Judges our TorchSharp Mistral against Hugging Face transformers and our tokenizer against sentencepiece.

Run where transformers, torch and sentencepiece are installed:  python3 compare.py OUTDIR
OUTDIR holds what `dotnet run --project tools/HfParity -- OUTDIR` wrote. Exits non-zero on any mismatch.
"""
import json, os, sys
import numpy as np
import torch
import sentencepiece as spm
from transformers import MistralForCausalLM

out = sys.argv[1] if len(sys.argv) > 1 else "hf-parity"
torch.manual_seed(0)
failures = 0
for name in sorted(d for d in os.listdir(out) if os.path.isdir(os.path.join(out, d))):
    folder = os.path.join(out, name)
    ours = json.load(open(os.path.join(out, name + ".ours.json")))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(folder, "tokenizer.model"))
    for impl in ("eager", "sdpa"):
        model = MistralForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=impl).eval()
        cfg = model.config
        for case in ours["cases"]:
            prompt = case["prompt"]
            sp_ids = [sp.bos_id()] + sp.encode(prompt)
            tok_ok = sp_ids == case["ids"]
            seq = torch.tensor([case["sequence"]])
            with torch.no_grad():
                logits = model(seq).logits[0].double().numpy()
                gen = model.generate(torch.tensor([case["ids"]]), max_new_tokens=len(case["greedy"]), do_sample=False,
                                     min_new_tokens=len(case["greedy"]), pad_token_id=cfg.eos_token_id)
            hf_greedy = gen[0, len(case["ids"]):].tolist()
            ours_logits = np.array(case["logits"], dtype=np.float64).reshape(len(case["sequence"]), case["vocab"])
            diff = np.abs(logits - ours_logits).max()
            scale = np.abs(logits).max()
            ok = tok_ok and hf_greedy == case["greedy"] and diff < 1e-3
            failures += 0 if ok else 1
            print(f"{name:14s} {impl:5s} window={cfg.sliding_window} tokens={len(case['sequence']):3d} "
                  f"sentencepiece_ids_equal={tok_ok} greedy_equal={hf_greedy == case['greedy']} "
                  f"max_abs_logit_diff={diff:.2e} (max |logit| {scale:.1f}) {'OK' if ok else 'MISMATCH'}")
            if not tok_ok:
                print("   sentencepiece:", sp_ids, "\n   ours:        ", case["ids"])
print("FAILURES:", failures)
sys.exit(1 if failures else 0)
