"""Our callback handling against WeCom's published vectors and an independent implementation."""
import base64
import time

import pytest

from bot.channels.wecom import CallbackRejected, WeComCodec, parse_xml, read_message
from bot.config import WeComConfig
from tests import wecom_vectors as v


def codec(token: str = v.TOKEN, key: str = v.AES_KEY, corp_id: str = v.CORP_ID) -> WeComCodec:
    return WeComCodec(WeComConfig(corp_id=corp_id, token=token, encoding_aes_key=key))


def test_official_url_verification_vector() -> None:
    assert v.sign(v.TOKEN, v.VERIFY["timestamp"], v.VERIFY["nonce"], v.VERIFY["echostr"]) == v.VERIFY["msg_signature"]
    echo = codec().verify_url(v.VERIFY, now=int(v.VERIFY["timestamp"]))
    assert echo == "1616140317555161061"


def test_official_message_vector_decrypts_and_parses() -> None:
    plaintext = codec().decrypt(v.POST_QUERY, v.POST_BODY, now=int(v.POST_QUERY["timestamp"]))
    received = read_message(plaintext)
    assert received.message is not None
    assert (received.message.user_id, received.message.text, received.message.kind) == ("mycreate", "hello", "text")
    assert received.dedupe_key == "wecom:msg:4561255354251345929"


def test_callback_built_by_an_independent_implementation() -> None:
    token, key, corp = "tok3n", "A" * 42 + "A", "wwindependent0001"
    now = int(time.time())
    message = ("<xml><ToUserName><![CDATA[wwindependent0001]]></ToUserName><FromUserName><![CDATA[u1]]></FromUserName>"
               f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
               "<Content><![CDATA[帮助 🙂]]></Content><MsgId>42</MsgId><AgentID>1</AgentID></xml>")
    query, body = v.callback(message, token, key, corp, now)
    received = read_message(codec(token, key, corp).decrypt(query, body))
    assert received.message is not None and received.message.text == "帮助 🙂"


@pytest.mark.parametrize("tamper", ["signature", "ciphertext", "timestamp", "nonce"])
def test_tampered_callbacks_are_refused(tamper: str) -> None:
    query = dict(v.POST_QUERY)
    body = v.POST_BODY
    if tamper == "signature":
        query["msg_signature"] = "0" * 40
    elif tamper == "ciphertext":
        body = body.replace(b"RypEv", b"RypEw")
    elif tamper == "timestamp":
        query["timestamp"] = str(int(query["timestamp"]) + 1)
    else:
        query["nonce"] = "1"
    with pytest.raises(CallbackRejected) as err:
        codec().decrypt(query, body, now=int(v.POST_QUERY["timestamp"]))
    assert err.value.status == 403


def test_message_for_another_corp_is_refused() -> None:
    # Same token and key, but the ciphertext names another receiver: WeCom's receive-id check.
    with pytest.raises(CallbackRejected) as err:
        codec(corp_id="wwsomeoneelse").decrypt(v.POST_QUERY, v.POST_BODY, now=int(v.POST_QUERY["timestamp"]))
    assert err.value.status == 400


def test_stale_timestamp_is_refused_as_a_replay() -> None:
    with pytest.raises(CallbackRejected) as err:
        codec().decrypt(v.POST_QUERY, v.POST_BODY)  # the vector is from 2014
    assert err.value.status == 403 and "replay" in err.value.reason


@pytest.mark.parametrize("query", [{}, {"msg_signature": "x", "timestamp": "1", "nonce": ""},
                                   {"msg_signature": "x", "timestamp": "abc", "nonce": "n"}])
def test_missing_or_malformed_parameters(query: dict) -> None:
    with pytest.raises(CallbackRejected) as err:
        codec().decrypt(query, v.POST_BODY)
    assert err.value.status == 400


def test_url_verification_with_a_bad_signature() -> None:
    with pytest.raises(CallbackRejected) as err:
        codec().verify_url({**v.VERIFY, "msg_signature": "f" * 40}, now=int(v.VERIFY["timestamp"]))
    assert err.value.status == 403


@pytest.mark.parametrize("body", [
    b"not xml at all",
    b"<xml><Encrypt>unterminated",
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><xml><Encrypt>&b;</Encrypt></xml>',
    b"<other><Encrypt>x</Encrypt></other>",
    b"<xml><Encrypt></Encrypt></xml>",
])
def test_malformed_or_hostile_xml_is_400(body: bytes) -> None:
    query = {"msg_signature": "x", "timestamp": str(int(time.time())), "nonce": "n"}
    with pytest.raises(CallbackRejected) as err:
        codec().decrypt(query, body)
    assert err.value.status == 400


def test_undecryptable_ciphertext_with_a_valid_signature_is_400() -> None:
    garbage = base64.b64encode(b"x" * 33).decode()
    now = str(int(time.time()))
    query = {"msg_signature": v.sign(v.TOKEN, now, "n", garbage), "timestamp": now, "nonce": "n"}
    with pytest.raises(CallbackRejected) as err:
        codec().decrypt(query, f"<xml><Encrypt>{garbage}</Encrypt></xml>".encode())
    assert err.value.status == 400


def test_template_card_event_fields_come_from_the_raw_message() -> None:
    xml = ("<xml><ToUserName>c</ToUserName><FromUserName>u1</FromUserName><CreateTime>1700000000</CreateTime>"
           "<MsgType>event</MsgType><Event>template_card_event</Event><EventKey>help</EventKey>"
           "<TaskId>task-9</TaskId><CardType>button_interaction</CardType><ResponseCode>rc1</ResponseCode>"
           "<AgentID>1</AgentID></xml>")
    received = read_message(xml)
    assert received.message is not None
    assert (received.message.kind, received.message.event_key, received.message.card_task_id,
            received.message.response_code) == ("card_event", "help", "task-9", "rc1")
    # Two clicks in the same second on different cards are different events.
    other = read_message(xml.replace("task-9", "task-10"))
    assert other.dedupe_key != received.dedupe_key


def test_events_without_an_action_are_acknowledged_but_not_processed() -> None:
    xml = ("<xml><ToUserName>c</ToUserName><FromUserName>u1</FromUserName><CreateTime>1700000000</CreateTime>"
           "<MsgType>event</MsgType><Event>enter_agent</Event><EventKey></EventKey><AgentID>1</AgentID></xml>")
    assert read_message(xml).message is None


def test_parse_xml_refuses_entities() -> None:
    with pytest.raises(CallbackRejected):
        parse_xml('<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><a>&e;</a></xml>')
