import os
import boto3
import pytest
from tests.conftest import CANARY, openai_body

def bedrock_body(name="bed"):
    return {"name": name, "provider": "bedrock", "credentials": {
        "access_key_id": "AKIAABCDEFGHIJKLMNOP", "secret_access_key": "abcdEFGHijklMNOPqrstUVWXyz0123456789+/ab",
        "session_token": "tokentokentokentoken1234", "region": "us-east-1"}}

def test_explore(api):
    from chalicelib.api.deps import services
    from chalicelib.data.models import ConnectionModel
    r = api.post("/connections", bedrock_body())
    print(r.status_code, r.data)
    cid = r.data["id"]
    item = ConnectionModel.get(cid)
    print(services().connections.open_secrets(item))
    ddb = boto3.client("dynamodb")
    raw = ddb.get_item(TableName=os.environ["CONNECTIONS_TABLE"], Key={"id": {"S": cid}})["Item"]
    print(raw["sealed"])
    wdk = raw["sealed"]["M"]["wdk"]["B"]
    print(len(wdk), wdk[:60])
    from chalicelib.crypto import Sealed, Binding
    for pos in (0, 10, 36, 40, 50, len(wdk)-1):
        b = bytearray(wdk); b[pos] ^= 1
        try:
            services().connections._cipher_factory().open(Sealed(1, item.sealed.kid, bytes(b), bytes(item.sealed.nonce), bytes(item.sealed.ct)), Binding(item.owner, item.id, item.provider, item.base_url))
            print(pos, "opened!")
        except Exception as e:
            print(pos, type(e), e)
