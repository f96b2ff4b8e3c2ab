"""An independent JMAP client (jmapc, from PyPI) against a live `tidings serve`.

Usage: jmapc_check.py HOST:PORT USER PASSWORD [changes SINCE_STATE]
Prints one JSON object with what it found; the Rust test (tests/jmap_client.rs) checks it.
With `changes`, it only asks Email/changes since that state and prints what changed.
Certificates are verified against REQUESTS_CA_BUNDLE.
"""

import hashlib
import json
import sys
import tempfile

import jmapc
from jmapc import (
    Comparator,
    EmailQueryFilterCondition,
    EmailQueryFilterOperator,
    Operator,
    Ref,
)
from jmapc.methods import (
    CoreEcho,
    EmailChanges,
    EmailGet,
    EmailQuery,
    IdentityGet,
    MailboxGet,
    ThreadGet,
)


def main() -> None:
    host, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
    client = jmapc.Client.create_with_password(host=host, user=user, password=password)
    if len(sys.argv) > 5 and sys.argv[4] == "changes":
        changes = client.request(EmailChanges(since_state=sys.argv[5]))
        print(json.dumps({"created": changes.created, "new_state": changes.new_state}))
        return
    session = client.jmap_session
    out = {
        "username": session.username,
        "primary_mail": session.primary_accounts.mail,
        "api_url": session.api_url,
    }
    echo = client.request(CoreEcho(data={"hello": "tidings"}))
    out["echo"] = echo.data
    identities = client.request(IdentityGet())
    out["identities"] = [i.email for i in identities.data]
    mailboxes = client.request(MailboxGet(ids=None))
    out["mailboxes"] = {
        m.name: {"role": m.role, "total": m.total_emails, "unread": m.unread_emails}
        for m in mailboxes.data
    }
    inbox = next(m for m in mailboxes.data if m.role == "inbox")
    results = client.request(
        [
            EmailQuery(
                filter=EmailQueryFilterCondition(in_mailbox=inbox.id),
                sort=[Comparator(property="receivedAt", is_ascending=False)],
                limit=3,
                calculate_total=True,
            ),
            EmailGet(
                ids=Ref("/ids"),
                properties=["subject", "from", "receivedAt", "preview", "threadId", "keywords"],
            ),
            ThreadGet(ids=Ref("/list/*/threadId")),
        ]
    )
    query, emails, threads = (r.response for r in results)
    out["total"] = query.total
    out["email_state"] = emails.state
    out["subjects"] = [e.subject for e in emails.data]
    out["from"] = [e.mail_from[0].email if e.mail_from else None for e in emails.data]
    out["previews"] = [bool(e.preview) for e in emails.data]
    out["threads"] = len(threads.data)

    # An OR filter, sorted by subject.
    either = client.request(
        [
            EmailQuery(
                filter=EmailQueryFilterOperator(
                    operator=Operator.OR,
                    conditions=[
                        EmailQueryFilterCondition(text="1"),
                        EmailQueryFilterCondition(text="attachment"),
                    ],
                ),
                sort=[Comparator(property="subject", is_ascending=True)],
            ),
            EmailGet(ids=Ref("/ids"), properties=["subject"]),
        ]
    )
    out["or_by_subject"] = [e.subject for e in either[1].response.data]

    # Bodies and an attachment: the message with subject "With attachment".
    found = client.request(
        [
            EmailQuery(filter=EmailQueryFilterCondition(text="attachment")),
            EmailGet(
                ids=Ref("/ids"),
                properties=["subject", "textBody", "attachments", "bodyValues"],
                fetch_text_body_values=True,
            ),
        ]
    )
    mail = found[1].response.data[0]
    out["body"] = mail.body_values[mail.text_body[0].part_id].value
    att = mail.attachments[0]
    out["attachment"] = {"name": att.name, "type": att.type, "size": att.size}
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/download"
        client.download_attachment(att, path)
        with open(path, "rb") as f:
            out["attachment"]["sha256"] = hashlib.sha256(f.read()).hexdigest()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
