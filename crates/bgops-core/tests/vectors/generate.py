# Regenerates derive_key.json with the reference algorithm (seed 003, "Key Generation
# Algorithm"): sha256("{tenant}:{user or ''}:{op}:{json.dumps(params, sort_keys=True)}")[:32].
# Run: python3 generate.py > derive_key.json   (not needed to build or test bgops)
import hashlib
import json

cases = [
    ("tenant1", "user1", "send_email", {"to": "user@example.com", "subject": "Welcome"}),
    ("tenant1", None, "send_email", {"to": "user@example.com", "subject": "Welcome"}),
    ("tenant1", "user1", "send_email", {}),
    ("t", "u", "op", {"nested": {"b": [1, 2, 3], "a": None}, "flag": True, "f": 0.1,
                      "big": 10**18, "neg": -5}),
    ("tenant-é", "user", "op", {"name": "Zoë", "emoji": "\U0001F600", "ctrl": "a\nb\t\"q\"\\\x01"}),
    ("acme", "42", "charge_card", {"amount": 1999, "currency": "EUR", "ratio": 1e16,
                                   "tiny": 1.5e-05, "list": [{"z": 1, "y": 2}], "pi": 3.14159}),
    ("acme", "", "x", [1, "two", 3.0, None, {"k": []}]),
]
out = []
for tenant, user, op, params in cases:
    pj = json.dumps(params, sort_keys=True)
    key = hashlib.sha256(f"{tenant}:{user or ''}:{op}:{pj}".encode()).hexdigest()[:32]
    out.append({"tenant_id": tenant, "user_id": user, "operation_type": op,
                "parameters": params, "parameters_json": pj, "key": key})
print(json.dumps(out, indent=1, ensure_ascii=False))
