# Mean next-token loss of a Hugging Face model directory on byte-level text, windows of T+1
# bytes with stride T as `spectrain eval` cuts them: hf_loss.py DIR FILE T NTOKENS -> {"loss": x}
import sys, json, torch
from transformers import AutoModelForCausalLM
d, data, T, ntok = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32); m.eval()
b = open(data, 'rb').read()
n = -(-ntok // T)
tot, cnt = 0.0, 0
with torch.no_grad():
    for i in range(n):
        w = torch.tensor(list(b[i*T:i*T+T+1]))[None]
        lg = m(input_ids=w[:, :-1]).logits
        tot += torch.nn.functional.cross_entropy(lg[0], w[0, 1:], reduction='sum').item(); cnt += T
print(json.dumps({"loss": tot / cnt}))
