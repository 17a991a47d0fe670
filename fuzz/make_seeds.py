#!/usr/bin/env python3
"""Write the hand-made seed files of fuzz/corpus/{relay_bytes,config}.

relay_bytes inputs are `[n][n control bytes][stream bytes]` (see
fuzz_targets/relay_bytes.rs); the stream is what a server sends after the
handshake. Pseudonyms are computed with the fuzz driver's secret, so the
seeds reach real lookups, relays, receipts and bounces.

Run from the fuzz/ directory: python3 make_seeds.py
"""

import base64
import hashlib
import hmac
import os

SECRET = b"a fuzzing secret of some length"
DOMAIN = "axr.example"


def pseudonym(identity):
    mac = hmac.new(SECRET, identity.encode(), hashlib.sha224).digest()
    return base64.b32encode(mac).decode().rstrip("=").lower() + "@" + DOMAIN


ALICE = "alice@a.example/phone"
BOB = "bob@b.example/laptop"
PA = pseudonym("alice@a.example")
PB = pseudonym("bob@b.example")

CONVERSATION = "".join([
    f"<message from='{ALICE}' to='{DOMAIN}' type='chat' id='w1'><body>/whoami</body></message>",
    f"<message from='{BOB}' to='{DOMAIN}' id='w2'><body>/whoami please</body></message>",
    f"<message from='{BOB}' to='{DOMAIN}/x' type='chat'><body>/help</body></message>",
    f"<message from='{BOB}' to='{PA}' type='chat' id='m1'><body>h\u00e9llo &amp; &lt;b&gt; \U0001F600</body>"
    "<request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/><no-store xmlns='urn:xmpp:hints'/>"
    "<nick xmlns='http://jabber.org/protocol/nick'>Bob</nick>"
    "<origin-id xmlns='urn:xmpp:sid:0' id='m1'/></message>",
    f"<message from='{ALICE}' to='{PB}/a' type='chat' id='r1'><received xmlns='urn:xmpp:receipts' id='unknownfreshid00'/>"
    "<displayed xmlns='urn:xmpp:chat-markers:0' id='unknownfreshid00'/>"
    "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
    f"<message from='{BOB}' to='{PA}' type='chat' id='m2'><body>fixed</body>"
    "<replace xmlns='urn:xmpp:message-correct:0' id='m1'/></message>",
    f"<message from='{ALICE}' to='{PB}' id='m3'><subject xml:lang='en'>s</subject><thread>t1</thread>"
    "<body xml:lang='de'><![CDATA[x]]]]><![CDATA[>y]]></body></message>",
    f"<message from='{BOB}' to='{PA}/a' type='error' id='zzzzzzzzzzzzzzzz'><error type='cancel'>"
    "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
    "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>bob@b.example is offline</text></error></message>",
    f"<message from='{BOB}' to='{PA}' type='groupchat'><body>g</body></message>",
    f"<message from='{BOB}' to='{PA}' type='headline'><body>h</body></message>",
    f"<message from='{BOB}' to='{'a' * 45}@{DOMAIN}'><body>nobody</body></message>",
    f"<message from='{BOB}' to='short@{DOMAIN}'><body>not a pseudonym</body></message>",
    f"<message from='x@{DOMAIN}' to='{PA}'><body>own domain</body></message>",
    f"<presence type='subscribe' from='bob@b.example' to='{PA}'/>",
    f"<presence type='probe' from='{BOB}' to='{DOMAIN}'/>",
    f"<presence type='unsubscribe' from='{BOB}' to='bad@{DOMAIN}'/>",
    f"<presence from='{BOB}' to='{PA}'><show>away</show><status>s</status></presence>",
    f"<iq type='get' id='i1' from='{ALICE}' to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    f"<iq type='get' id='i2' from='{ALICE}' to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
    f"<iq type='get' id='i3' from='{ALICE}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>",
    f"<iq type='get' id='i4' from='{ALICE}' to='{PB}'><query xmlns='jabber:iq:version'/></iq>",
    f"<iq type='set' id='i5' from='{ALICE}' to='{DOMAIN}'/>",
    f"<iq type='result' id='keepalive-1' from='a.example' to='{DOMAIN}'/>",
    f"<message from='{ALICE}' to='{PB}'><body>after</body></message>",
])

HOSTILE = "".join([
    f"<message from='{BOB}' to='{PA}' id='deep'>" + "<a>" * 40 + "</a>" * 40 + "</message>",
    f"<message from='{BOB}' to='{PA}' id='attrs'" + "".join(f" a{i}='v'" for i in range(70)) + "><body>x</body></message>",
    f"<message from='{BOB}' to='{PA}' id='ns'><x" + "".join(f" xmlns:p{i}='urn:{i}'" for i in range(20)) + "/></message>",
    f"<message from='{BOB}' to='{PA}' id='big'><body>" + "z" * 5000 + "</body><x a='&gt;'/><![CDATA[</message>]]></message>",
    f"<message from='{BOB}' to='{PA}' id='ok'><body>still here</body></message>",
])

CLOSE = f"<message from='{BOB}' to='{PA}'><body>bye</body></message></stream:stream>"
CONFLICT = "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
FATAL = f"<message from='{BOB}' to='{PA}'><!-- comment --></message>"


def relay_seed(ctl, stream):
    ctl = bytes(ctl)
    return bytes([len(ctl)]) + ctl + stream.encode()


def write(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    w = lambda n, c, s: write("relay_bytes", n, relay_seed(c, s))
    # Whole stream, store answers at once.
    w("conversation", [0x00, 0x00], CONVERSATION)
    # Encrypted store, full identities, TTL.
    w("conversation-encrypted-full", [0x13, 0x00], CONVERSATION)
    # Differential: chunked vs whole.
    w("conversation-differential", [0x80, 0x00, 1, 7, 200, 3, 15, 230], CONVERSATION)
    # Store held, answered late, failed, poisoned; time passes; chunked.
    w("conversation-held-store", [0x01, 0x00,
                                  1, 200, 3, 0, 0, 150, 4, 1, 0, 150, 5, 2, 0, 150,
                                  7, 40, 0, 150, 8, 0, 0, 150, 6, 0, 150, 2, 0, 0], CONVERSATION)
    # Tiny caches and queues.
    w("conversation-tiny-caches", [0x09, 0xff, 1, 130, 1, 130, 1, 130, 6, 0], CONVERSATION)
    # Limits: default, then small.
    w("hostile-default-limits", [0x00, 0x00], HOSTILE)
    w("hostile-small-limits", [0x04, 0x00, 0, 1, 0, 9, 0, 140, 0, 230], HOSTILE)
    w("hostile-differential", [0x84, 0x00, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233], HOSTILE)
    # The server closes, errors, or sends a comment; then the stream goes on
    # after a reconnect.
    w("server-close", [0x00, 0x00], CLOSE + CONVERSATION)
    w("server-conflict", [0x00, 0x00], CONFLICT + CONVERSATION)
    w("fatal-comment", [0x00, 0x00], FATAL + CONVERSATION)
    # Socket drop and shutdown mid-stream.
    w("socket-drop", [0x00, 0x00, 9, 140, 0, 0], CONVERSATION)
    w("shutdown", [0x00, 0x00, 1, 140, 10, 140, 0, 0], CONVERSATION)

    sample = """[relay]
jid      = axr.example.org    ; component JID
server   = 127.0.0.1
port     = 5347
password = component-secret
runtime  = smol               ; smol | blocking
keepalive = 60                ; seconds

[hash]
secret   = c29tZSBzZWNyZXQgdGhhdCBpcyBsb25nIGVub3VnaA==
domain   = axr.example.org
identity = bare               ; bare | full
resource = a

[memcache]                    ; present -> memcached store
servers  = 127.0.0.1:11211, 10.0.0.2:11211
encrypt  = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
binary = True

[limits]
max_stanza_bytes = 524288
max_depth        = 32
"""
    write("config", "sample", sample.encode())
    local = """# local store, proxy
[Relay]
JID: axr.example.org
server = relay.b32.i2p
port = 5347
password = another-component-secret
runtime = blocking
proxy = socks5://user:pw@127.0.0.1:4447
connect_timeout = 0.5
handshake_timeout = 90

[hash]
secret = a-hash-secret-of-some-length
identity = full
resource = r

[local_storage]
path = pseudonyms.db
encrypt = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8
ttl = 86400
[unknown]
x = 1
"""
    write("config", "local-storage-proxy", local.encode())
    write("config", "minimal", b"[relay]\njid=a.b\nserver=s\nport=1\npassword=p\n[hash]\nsecret=s\n")
    write("config", "broken", b"[relay\njid = axr.example.org\nport = 99999\n")


if __name__ == "__main__":
    main()
