"""Web Push keys and decryption for web/e2e/push.mjs, with Mozilla's http_ece (RFC 8188,
RFC 8291 aes128gcm): an implementation independent of the server's, standing in for the
browser's push stack.

  push_ece.py keys               prints {"p256dh", "auth", "private"} (base64url)
  push_ece.py decrypt PRIV AUTH  decrypts the push body on stdin to stdout
"""

import base64
import json
import os
import sys

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def main() -> int:
    if sys.argv[1:2] == ["keys"]:
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        private = key.private_numbers().private_value.to_bytes(32, "big")
        print(json.dumps({"p256dh": b64(public), "auth": b64(os.urandom(16)), "private": b64(private)}))
        return 0
    if sys.argv[1:2] == ["decrypt"] and len(sys.argv) == 4:
        key = ec.derive_private_key(int.from_bytes(unb64(sys.argv[2]), "big"), ec.SECP256R1())
        body = sys.stdin.buffer.read()
        clear = http_ece.decrypt(body, private_key=key, auth_secret=unb64(sys.argv[3]), version="aes128gcm")
        sys.stdout.buffer.write(clear)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
