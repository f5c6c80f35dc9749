"""`make rewrap NEW_KEY=<key id, ARN or alias>`: re-encrypt every connection's data key under
another KMS key (KMS ReEncrypt; no plaintext here). Uses the environment's AWS settings: the
running local stack by default, or your AWS credentials with --cloud and the stage's table
names exported (see docs/deploy.md)."""

from __future__ import annotations

import argparse
import json

from devtools import localenv, localstack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("new_key")
    parser.add_argument("--aws-port", type=int, default=None)
    parser.add_argument("--cloud", action="store_true",
                        help="use the current environment as is (no local stack)")
    args = parser.parse_args()
    if not args.cloud:
        port = args.aws_port
        if port is None:
            run = json.loads((localenv.state_dir() / "run.json").read_text())
            port = int(run["aws"].rsplit(":", 1)[1])
        localstack.apply_env(localenv.environment(port))
    from chalicelib.api.deps import services
    from chalicelib.crypto import EnvelopeCipher
    from chalicelib.data import aws
    from chalicelib.data.connections_repo import ConnectionRepository
    from chalicelib.services.maintenance import rewrap_all

    settings = services().settings
    rewrap_all(ConnectionRepository(), EnvelopeCipher(aws.client("kms"), settings.kms_key_id),
               args.new_key)


if __name__ == "__main__":
    main()
