"""Sending with an independent JMAP client (jmapc, from PyPI) against `tidings serve`.

Usage: jmapc_send.py HOST:PORT USER PASSWORD RCPT
Finds the first draft, submits it to RCPT with an explicit envelope, waits (bounded) for
the submission to be final and prints one JSON object with what the server said; the
Rust test (tests/jmapc_send.rs) checks it. Certificates are verified against
REQUESTS_CA_BUNDLE.
"""

import json
import sys
import time

import jmapc
from jmapc import Address, EmailQueryFilterCondition, EmailSubmission, Envelope
from jmapc.methods import (
    EmailQuery,
    EmailSubmissionGet,
    EmailSubmissionSet,
    IdentityGet,
    MailboxGet,
)


def main() -> None:
    host, user, password, rcpt = sys.argv[1:5]
    client = jmapc.Client.create_with_password(host=host, user=user, password=password)
    identity = client.request(IdentityGet()).data[0]
    drafts = next(m for m in client.request(MailboxGet(ids=None)).data if m.role == "drafts")
    email_id = client.request(
        EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=drafts.id))
    ).ids[0]
    created = client.request(
        EmailSubmissionSet(
            create={
                "send": EmailSubmission(
                    identity_id=identity.id,
                    email_id=email_id,
                    envelope=Envelope(
                        mail_from=Address(email=identity.email),
                        rcpt_to=[Address(email=rcpt)],
                    ),
                )
            }
        )
    )
    if not created.created or "send" not in created.created:
        print(json.dumps({"error": str(created.not_created)}))
        return
    sid = created.created["send"].id
    deadline = time.monotonic() + 30
    while True:
        sub = client.request(EmailSubmissionGet(ids=[sid])).data[0]
        status = sub.delivery_status[rcpt]
        settled = sub.undo_status.value == "final" and (
            status.delivered.value != "queued" or status.smtp_reply.startswith("250")
        )
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(
        json.dumps(
            {
                "identity": identity.email,
                "email_id": sub.email_id,
                "undo": sub.undo_status.value,
                "delivered": status.delivered.value,
                "reply": status.smtp_reply,
                "mail_from": sub.envelope.mail_from.email,
                "send_at": sub.send_at.isoformat() if sub.send_at else None,
            }
        )
    )


if __name__ == "__main__":
    main()
