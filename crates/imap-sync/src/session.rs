//! An authenticated IMAP session: greeting, STARTTLS, capabilities, login, ENABLE, and the
//! commands the sync needs (LIST, EXAMINE with CONDSTORE/QRESYNC, pipelined UID FETCH,
//! SEARCH, IDLE, NOTIFY).

use crate::conn::{CONNECT_TIMEOUT, Connection, Endpoint, quote};
use crate::error::{Error, Result};
use crate::profile::{Profile, Provider, ProviderChoice};
use crate::response::{self, Code, Fetch, ListEntry, Response, StatusData};
use base64::Engine;
use mail_net::sasl::{self, OAuthMechanism};
use mail_net::{Credentials, Login};
use mail_types::Security;
use std::collections::{HashSet, VecDeque};
use std::ops::RangeInclusive;
use std::time::Duration;

/// After the first event in IDLE, how long to wait for the rest of its burst.
const IDLE_COALESCE: Duration = Duration::from_millis(2);
/// A burst longer than this is acted on anyway; the resync catches the rest.
const IDLE_BURST_MAX: usize = 10_000;

/// What EXAMINE told us about a mailbox.
#[derive(Debug, Clone, Default)]
pub struct Selected {
    pub uidvalidity: u32,
    pub uidnext: Option<u32>,
    pub exists: u32,
    /// None when the server has no CONDSTORE for this mailbox (or NOMODSEQ).
    pub highestmodseq: Option<u64>,
    /// RFC 7162 3.2.5.1: UIDs expunged since the mod-sequence we gave (QRESYNC only).
    pub vanished: Vec<RangeInclusive<u32>>,
    /// RFC 7162 3.2.5.1: flags of messages changed since that mod-sequence (QRESYNC only).
    pub changed: Vec<Fetch>,
}

/// One step of a SASL exchange.
enum AuthStep {
    Challenge(Vec<u8>),
    Done(Result<(Vec<Response>, Option<Code>)>),
}

pub struct Session {
    conn: Connection,
    caps: HashSet<String>,
    /// QRESYNC was ENABLEd (RFC 7162 3.2.3).
    qresync: bool,
    /// What this server is trusted to do; capabilities it distrusts are never used.
    profile: Profile,
    /// The greeting's text, for provider detection.
    greeting: String,
    /// UIDNEXT of the mailbox selected last, for SEARCHes split in UID ranges.
    pub(crate) selected_uidnext: Option<u32>,
    /// Untagged responses that arrived while a command ran and that its caller did not
    /// consume (EXISTS, EXPUNGE, VANISHED, flag FETCHes): the sync looks at them after.
    /// Private: a caller outside this crate takes or drops them with `take_unsolicited` and
    /// `clear_unsolicited`, so what a command saw is never read from a stale buffer.
    pub(crate) unsolicited: Vec<Response>,
}

impl Session {
    /// Connects, secures, logs in with a password and enables what the sync uses.
    pub async fn connect(ep: &Endpoint, creds: &Credentials) -> Result<Session> {
        Self::connect_login(ep, &Login::Password(creds.clone())).await
    }

    /// Connects, secures, authenticates as `login` says and enables what the sync uses.
    pub async fn connect_login(ep: &Endpoint, login: &Login) -> Result<Session> {
        Self::connect_profile(ep, login, ProviderChoice::Auto).await
    }

    /// Like `connect_login`, with the provider profile the account's configuration names
    /// (`Auto`: detected from the host name, greeting and capabilities).
    pub async fn connect_profile(
        ep: &Endpoint,
        login: &Login,
        choice: ProviderChoice,
    ) -> Result<Session> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(ep, login, choice)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout),
        }
    }

    async fn connect_inner(
        ep: &Endpoint,
        login: &Login,
        choice: ProviderChoice,
    ) -> Result<Session> {
        let stream = mail_net::open(ep).await?;
        let mut s = Session {
            conn: Connection::new(stream),
            caps: HashSet::new(),
            qresync: false,
            profile: Profile::default(),
            greeting: String::new(),
            selected_uidnext: None,
            unsolicited: Vec::new(),
        };
        let greeting = response::parse(&s.conn.read_frame().await?);
        let preauth = match greeting {
            Response::Condition {
                status: response::Status::Ok,
                code,
                text,
            } => {
                s.greeting = text;
                if let Some(Code::Capabilities(c)) = code {
                    s.set_caps(c);
                }
                false
            }
            Response::Condition {
                status: response::Status::PreAuth,
                text,
                ..
            } => {
                s.greeting = text;
                true
            }
            Response::Condition {
                status: response::Status::Bye,
                text,
                ..
            } => return Err(Error::Bye(text)),
            _ => return Err(Error::Protocol("unexpected greeting".into())),
        };
        if s.caps.is_empty() {
            s.capability().await?;
        }
        s.choose_profile(&ep.host, choice);
        if ep.security == Security::Starttls {
            if preauth {
                // RFC 3501 6.2.1: STARTTLS is impossible after PREAUTH; refuse to go on in
                // the clear when the user asked for TLS.
                return Err(Error::Tls(
                    "server sent PREAUTH, STARTTLS impossible".into(),
                ));
            }
            if !s.has("STARTTLS") {
                return Err(Error::Unsupported("STARTTLS"));
            }
            s.run("STARTTLS").await?;
            s.conn.upgrade_tls(ep).await?;
            // RFC 3501 6.2.1: capabilities may change after TLS; the old list is void.
            s.caps.clear();
            s.capability().await?;
        }
        if !preauth {
            match login {
                Login::Password(creds) => s.login(creds).await?,
                Login::OAuth2 {
                    username,
                    access_token,
                } => s.authenticate_bearer(ep, username, access_token).await?,
            }
        }
        // The list after login is the one that counts (some servers, iCloud among them,
        // show another before): detect again with it.
        s.choose_profile(&ep.host, choice);
        if s.has("QRESYNC") && s.has("ENABLE") {
            let (untagged, _) = s.run("ENABLE QRESYNC").await?;
            // RFC 5161 3.2: an extension is enabled only when ENABLED names it; a server
            // that answers OK alone (iCloud) gets CONDSTORE treatment.
            s.qresync = untagged.iter().any(
                |r| matches!(r, Response::Capabilities(c) if c.iter().any(|c| c.eq_ignore_ascii_case("QRESYNC"))),
            );
        } else if s.condstore_offered() && s.has("ENABLE") {
            s.run("ENABLE CONDSTORE").await?;
        }
        tracing::debug!(host = %ep.host, provider = %s.profile.provider,
            qresync = s.qresync, condstore = s.condstore(), "session ready");
        Ok(s)
    }

    /// The profile the configuration names, or the one the server looks like.
    fn choose_profile(&mut self, host: &str, choice: ProviderChoice) {
        let provider = match choice {
            ProviderChoice::Fixed(p) => p,
            ProviderChoice::Auto => {
                let caps: Vec<String> = self.caps.iter().cloned().collect();
                Provider::detect(host, &self.greeting, &caps)
            }
        };
        if provider != self.profile.provider {
            self.profile = Profile::of(provider);
        }
    }

    /// The provider profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    fn set_caps(&mut self, caps: Vec<String>) {
        self.caps = caps.into_iter().map(|c| c.to_ascii_uppercase()).collect();
    }

    /// Whether the server advertised a capability (case-insensitive) that its profile
    /// lets us use.
    pub fn has(&self, cap: &str) -> bool {
        self.caps.contains(&cap.to_ascii_uppercase()) && self.profile.trusts(cap)
    }

    /// CONDSTORE is advertised, or implied by an advertised QRESYNC (RFC 7162 3.2.3: a
    /// QRESYNC server also implements CONDSTORE), and the profile trusts it.
    fn condstore_offered(&self) -> bool {
        self.profile.trusts("CONDSTORE")
            && (self.caps.contains("CONDSTORE") || self.caps.contains("QRESYNC"))
    }

    pub fn condstore(&self) -> bool {
        self.condstore_offered() || self.qresync
    }

    pub fn qresync(&self) -> bool {
        self.qresync
    }

    async fn capability(&mut self) -> Result<()> {
        let (untagged, _) = self.run("CAPABILITY").await?;
        for r in untagged {
            if let Response::Capabilities(c) = r {
                self.set_caps(c);
            }
        }
        Ok(())
    }

    async fn login(&mut self, creds: &Credentials) -> Result<()> {
        if self.has("LOGINDISABLED") && !self.has("AUTH=PLAIN") {
            return Err(Error::Unsupported(
                "a login mechanism usable on this connection",
            ));
        }
        let result = if self.has("AUTH=PLAIN") {
            // RFC 4616; base64 carries any byte safely.
            let plain = sasl::plain(&creds.username, &creds.password);
            let b64 = base64::engine::general_purpose::STANDARD.encode(&plain);
            if self.has("SASL-IR") {
                self.run_secret(&format!("AUTHENTICATE PLAIN {b64}")).await
            } else {
                let tag = self.conn.tag();
                self.conn
                    .write_all(format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes())
                    .await?;
                loop {
                    match response::parse(&self.conn.read_frame().await?) {
                        Response::Continue => break,
                        Response::Tagged { text, .. } => return Err(Error::Auth(text)),
                        other => self.unsolicited.push(other),
                    }
                }
                self.conn.write_all(format!("{b64}\r\n").as_bytes()).await?;
                self.finish(&tag, "AUTHENTICATE").await
            }
        } else {
            match (quote(&creds.username), quote(&creds.password)) {
                (Some(u), Some(p)) => self.run_secret(&format!("LOGIN {u} {p}")).await,
                _ => Err(Error::Unsupported("AUTH=PLAIN for a non-ASCII login")),
            }
        };
        match result {
            Ok((_, code)) => {
                match code {
                    Some(Code::Capabilities(c)) if !self.profile.recheck_capabilities => {
                        self.set_caps(c)
                    }
                    _ => {
                        self.caps.clear();
                        self.capability().await?;
                    }
                }
                Ok(())
            }
            Err(Error::Refused { text, .. }) => Err(Error::Auth(text)),
            Err(e) => Err(e),
        }
    }

    /// RFC 7628 / XOAUTH2 over RFC 3501 6.2.2 AUTHENTICATE, with the initial response on
    /// the command line when the server has SASL-IR (RFC 4959).
    async fn authenticate_bearer(&mut self, ep: &Endpoint, user: &str, token: &str) -> Result<()> {
        let mech = OAuthMechanism::choose(|m| self.has(&format!("AUTH={m}")))
            .ok_or(Error::Unsupported("AUTH=OAUTHBEARER or AUTH=XOAUTH2"))?;
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(mech.initial_response(user, token, &ep.host, ep.port));
        let name = mech.name();
        let tag = self.conn.tag();
        if self.has("SASL-IR") {
            self.conn
                .write_all(format!("{tag} AUTHENTICATE {name} {b64}\r\n").as_bytes())
                .await?;
        } else {
            self.conn
                .write_all(format!("{tag} AUTHENTICATE {name}\r\n").as_bytes())
                .await?;
            match self.read_auth_step(&tag).await? {
                AuthStep::Challenge(_) => {}
                AuthStep::Done(r) => return self.after_auth(r).await,
            }
            self.conn.write_all(format!("{b64}\r\n").as_bytes()).await?;
        }
        // RFC 7628 3.2.2: a refused token comes back as a challenge carrying a JSON error;
        // 3.2.3: the client answers ^A and the server then ends the exchange with NO.
        let mut failure = None;
        for _ in 0..2 {
            match self.read_auth_step(&tag).await? {
                AuthStep::Challenge(c) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(c.trim_ascii())
                        .map_err(|_| "an OAuth error challenge that is not base64".to_string());
                    failure = Some(decoded.and_then(|j| sasl::parse_error_challenge(&j)));
                    let ack = base64::engine::general_purpose::STANDARD.encode(sasl::ERROR_ACK);
                    self.conn.write_all(format!("{ack}\r\n").as_bytes()).await?;
                }
                AuthStep::Done(r) => {
                    return match (r, failure) {
                        (Err(Error::Refused { text, .. }), Some(Ok(f))) => {
                            Err(Error::TokenRejected { failure: f, text })
                        }
                        (Err(Error::Refused { .. }), Some(Err(why))) => Err(Error::Protocol(
                            format!("authentication refused with {why}"),
                        )),
                        (r, _) => self.after_auth(r).await,
                    };
                }
            }
        }
        Err(Error::Protocol(
            "the server kept sending SASL challenges after the OAuth error".into(),
        ))
    }

    /// During AUTHENTICATE: a continuation (its text) or the tagged completion.
    async fn read_auth_step(&mut self, tag: &str) -> Result<AuthStep> {
        for _ in 0..1000 {
            let frame = self.conn.read_frame().await?;
            if let Some(rest) = frame.strip_prefix(b"+") {
                let text = rest.strip_prefix(b" ").unwrap_or(rest);
                let text = text.strip_suffix(b"\r\n").unwrap_or(text);
                return Ok(AuthStep::Challenge(text.to_vec()));
            }
            match response::parse(&frame) {
                Response::Tagged {
                    tag: t,
                    status,
                    code,
                    text,
                } if t == tag => {
                    return Ok(AuthStep::Done(match status {
                        response::Status::Ok => Ok((Vec::new(), code)),
                        _ => Err(Error::Refused {
                            command: "AUTHENTICATE".into(),
                            text,
                        }),
                    }));
                }
                Response::Condition {
                    status: response::Status::Bye,
                    text,
                    ..
                } => return Err(Error::Bye(text)),
                other => self.unsolicited.push(other),
            }
        }
        Err(Error::Protocol(
            "endless untagged responses during AUTHENTICATE".into(),
        ))
    }

    /// What follows a finished AUTHENTICATE: fresh capabilities, or the refusal.
    async fn after_auth(&mut self, r: Result<(Vec<Response>, Option<Code>)>) -> Result<()> {
        match r {
            Ok((_, Some(Code::Capabilities(c)))) if !self.profile.recheck_capabilities => {
                self.set_caps(c);
                Ok(())
            }
            Ok(_) => {
                // RFC 3501 6.2.2: capabilities may change after authentication.
                self.caps.clear();
                self.capability().await
            }
            Err(Error::Refused { text, .. }) => Err(Error::Auth(text)),
            Err(e) => Err(e),
        }
    }

    /// Like `run`, for commands carrying a secret: the command text never reaches an error.
    async fn run_secret(&mut self, cmd: &str) -> Result<(Vec<Response>, Option<Code>)> {
        let tag = self.conn.tag();
        self.conn
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .await?;
        self.finish(&tag, "LOGIN").await
    }

    /// Sends a command and collects its untagged responses until its completion. Private to
    /// the crate: callers say what they mean through the methods built on it.
    pub(crate) async fn run(&mut self, cmd: &str) -> Result<(Vec<Response>, Option<Code>)> {
        let tag = self.send(cmd).await?;
        let name = cmd.split(' ').take(2).collect::<Vec<_>>().join(" ");
        self.finish(&tag, &name).await
    }

    /// Sends a command without waiting; returns its tag.
    pub async fn send(&mut self, cmd: &str) -> Result<String> {
        let tag = self.conn.tag();
        self.conn
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .await?;
        Ok(tag)
    }

    /// Writes raw bytes (a literal's content) on the connection.
    pub(crate) async fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.conn.write_all(bytes).await
    }

    /// Closes the connection in the middle of a command (see `Session::append_if`).
    pub(crate) async fn cut(&mut self) {
        self.conn.shutdown().await;
    }

    /// Reads until the tagged completion of `tag`.
    pub(crate) async fn finish(
        &mut self,
        tag: &str,
        name: &str,
    ) -> Result<(Vec<Response>, Option<Code>)> {
        let mut untagged = Vec::new();
        loop {
            match self.read().await? {
                Response::Tagged {
                    tag: t,
                    status,
                    code,
                    text,
                } if t == tag => {
                    return match status {
                        response::Status::Ok => Ok((untagged, code)),
                        _ => Err(Error::Refused {
                            command: name.to_string(),
                            text,
                        }),
                    };
                }
                Response::Tagged { tag: t, .. } => {
                    return Err(Error::Protocol(format!(
                        "completion for unknown tag {t} while waiting for {tag}"
                    )));
                }
                other => untagged.push(other),
            }
        }
    }

    /// The next response, parsed. BYE becomes an error; unparseable frames are logged and
    /// skipped.
    pub async fn read(&mut self) -> Result<Response> {
        self.read_within(self.conn.read_timeout).await
    }

    pub async fn read_within(&mut self, timeout: Duration) -> Result<Response> {
        loop {
            let frame = self.conn.read_frame_within(timeout).await?;
            match response::parse(&frame) {
                Response::Condition {
                    status: response::Status::Bye,
                    text,
                    ..
                } => return Err(Error::Bye(text)),
                Response::Unparsed(start) => {
                    tracing::warn!(response_start = %start, len = frame.len(),
                        "skipping an IMAP response that does not parse");
                }
                r => return Ok(r),
            }
        }
    }

    /// LIST every mailbox with special-use, subscription and (with LIST-STATUS) status.
    /// The flag is true when some LIST line could not be parsed: the list is incomplete.
    pub async fn list(&mut self) -> Result<(Vec<ListEntry>, Vec<StatusData>, bool)> {
        let mut incomplete = false;
        let extended = self.has("LIST-EXTENDED") || self.has("LIST-STATUS");
        let mut entries = Vec::new();
        let mut statuses = Vec::new();
        if extended {
            let mut ret = vec!["SUBSCRIBED"];
            if self.has("SPECIAL-USE") {
                ret.push("SPECIAL-USE");
            }
            let status_items = if self.condstore() {
                "STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)"
            } else {
                "STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"
            };
            if self.has("LIST-STATUS") {
                ret.push(status_items);
            }
            let cmd = format!("LIST \"\" \"*\" RETURN ({})", ret.join(" "));
            let (untagged, _) = self.run(&cmd).await?;
            for r in untagged {
                match r {
                    Response::List(l) => entries.push(l),
                    Response::Status(s) => statuses.push(s),
                    Response::UnparsedList => incomplete = true,
                    other => self.unsolicited.push(other),
                }
            }
        } else {
            let (untagged, _) = self.run("LIST \"\" \"*\"").await?;
            for r in untagged {
                match r {
                    Response::List(l) => entries.push(l),
                    Response::UnparsedList => incomplete = true,
                    other => self.unsolicited.push(other),
                }
            }
            let (subs, _) = self.run("LSUB \"\" \"*\"").await?;
            let subscribed: HashSet<String> = subs
                .into_iter()
                .filter_map(|r| match r {
                    Response::List(l) => Some(l.raw_name),
                    _ => None,
                })
                .collect();
            for e in &mut entries {
                if subscribed.contains(&e.raw_name) {
                    e.attributes.push("\\Subscribed".into());
                }
            }
        }
        Ok((entries, statuses, incomplete))
    }

    /// Returns to the authenticated state after EXAMINE: UNSELECT (RFC 3691), else CLOSE,
    /// which expunges nothing in a mailbox opened read-only (RFC 3501 6.4.2). A refusal
    /// means nothing was selected (a pass that selected nothing), where we wanted to be.
    pub async fn leave_examined(&mut self) -> Result<()> {
        let cmd = if self.has("UNSELECT") {
            "UNSELECT"
        } else {
            "CLOSE"
        };
        match self.run(cmd).await {
            Ok(_) | Err(Error::Refused { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// EXAMINE a mailbox (read-only: the sync must not clear \Recent for other clients),
    /// with QRESYNC parameters when we know a previous state (RFC 7162 3.2.5).
    pub async fn examine(&mut self, raw_name: &str, known: Option<(u32, u64)>) -> Result<Selected> {
        let mut cmd = format!("EXAMINE {}", mailbox_arg(raw_name)?);
        match known {
            Some((v, m)) if self.qresync && v != 0 && m != 0 => {
                cmd.push_str(&format!(" (QRESYNC ({v} {m}))"));
            }
            _ if self.condstore() => cmd.push_str(" (CONDSTORE)"),
            _ => {}
        }
        self.selected_uidnext = None;
        let (untagged, _) = self.run_retrying(&cmd).await?;
        let mut sel = Selected::default();
        let mut got_validity = false;
        for r in untagged {
            match r {
                Response::Exists(n) => sel.exists = n,
                Response::Condition { code: Some(c), .. } => match c {
                    Code::UidValidity(v) => {
                        sel.uidvalidity = v;
                        got_validity = true;
                    }
                    Code::UidNext(n) => sel.uidnext = Some(n),
                    Code::HighestModSeq(m) => sel.highestmodseq = Some(m),
                    Code::NoModSeq => sel.highestmodseq = None,
                    _ => {}
                },
                Response::Vanished { uids, .. } => sel.vanished.extend(uids),
                Response::Fetch(f) => sel.changed.push(*f),
                _ => {}
            }
        }
        if !got_validity {
            return Err(Error::Protocol(format!(
                "EXAMINE {raw_name:?} gave no UIDVALIDITY"
            )));
        }
        self.selected_uidnext = sel.uidnext;
        Ok(sel)
    }

    /// `run`, retrying a refusal the server calls passing (RFC 5530 `[UNAVAILABLE]`) as
    /// often and as slowly as the profile says: Yahoo answers so under load, and one such
    /// answer must not cost the mailbox its pass. Only for commands that change nothing.
    pub(crate) async fn run_retrying(
        &mut self,
        cmd: &str,
    ) -> Result<(Vec<Response>, Option<Code>)> {
        let retry = self.profile.unavailable;
        let mut attempt = 1;
        loop {
            match self.run(cmd).await {
                Err(Error::Refused { command, text })
                    if attempt < retry.attempts && unavailable(&text) =>
                {
                    tracing::info!(%command, attempt, reason = %response::server_words(&text),
                        "server temporarily unavailable; retrying");
                    tokio::time::sleep(retry.delay).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// For a server that cuts SEARCH answers (the profile's `search_cap`), `ALL` or
    /// `UID n:*` as searches of UID ranges no longer than the cap, which therefore cannot
    /// match more than it; the last range is open so that UIDs given after the EXAMINE
    /// are found too. `None`: search as asked.
    fn capped_ranges(&self, criteria: &str) -> Option<Vec<String>> {
        let cap = self.profile.search_cap?.max(1);
        let from = if criteria.eq_ignore_ascii_case("ALL") {
            1
        } else {
            criteria
                .strip_prefix("UID ")?
                .strip_suffix(":*")?
                .parse::<u32>()
                .ok()?
        };
        let next = self.selected_uidnext?;
        let mut ranges = Vec::new();
        let mut start = from.max(1);
        // Bounded: a lying UIDNEXT must not make millions of commands.
        while start < next && ranges.len() < 100_000 {
            let end = start.saturating_add(cap - 1).min(next - 1);
            ranges.push(format!("UID {start}:{end}"));
            start = end.saturating_add(1);
        }
        ranges.push(format!("UID {start}:*"));
        Some(ranges)
    }

    /// UIDs of the selected mailbox matching `criteria` (e.g. `ALL`, `UID 500:*`), with
    /// ESEARCH when offered (compact ranges instead of every number).
    pub async fn uid_search(&mut self, criteria: &str) -> Result<Vec<u32>> {
        let parts = self
            .capped_ranges(criteria)
            .unwrap_or_else(|| vec![criteria.to_string()]);
        let mut uids = Vec::new();
        // Pipelined in windows: the range searches of a big mailbox are many round trips.
        for window in parts.chunks(32) {
            self.search_window(window, &mut uids).await?;
        }
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// One window of pipelined UID SEARCHes, retried whole on `NO [UNAVAILABLE]` as the
    /// profile says (what the window found before is kept: the result is a set).
    async fn search_window(&mut self, window: &[String], uids: &mut Vec<u32>) -> Result<()> {
        let retry = self.profile.unavailable;
        let mut attempt = 1;
        loop {
            match self.search_window_once(window, uids).await {
                Err(Error::Refused { command, text })
                    if attempt < retry.attempts && unavailable(&text) =>
                {
                    tracing::info!(%command, attempt, reason = %response::server_words(&text),
                        "server temporarily unavailable; retrying");
                    tokio::time::sleep(retry.delay).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    async fn search_window_once(&mut self, window: &[String], uids: &mut Vec<u32>) -> Result<()> {
        let mut tags = Vec::with_capacity(window.len());
        for part in window {
            let cmd = if self.has("ESEARCH") {
                format!("UID SEARCH RETURN (ALL) {part}")
            } else {
                format!("UID SEARCH {part}")
            };
            tags.push(self.send(&cmd).await?);
        }
        // Every command of the window is read to its end, even after a refusal, so the
        // connection stays in step; the first refusal is returned.
        let mut refused = None;
        for tag in tags {
            match self.finish(&tag, "UID SEARCH").await {
                Ok((untagged, _)) => self.collect_search(untagged, uids),
                Err(e @ Error::Refused { .. }) => {
                    refused.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn collect_search(&mut self, untagged: Vec<Response>, uids: &mut Vec<u32>) {
        for r in untagged {
            match r {
                Response::Search(v) => uids.extend(v),
                Response::ESearch { all, .. } => {
                    for range in all {
                        // Bounded: a lying server's "1:4294967295" must not exhaust memory.
                        let room = 50_000_000usize.saturating_sub(uids.len());
                        uids.extend(range.take(room));
                    }
                }
                other => self.unsolicited.push(other),
            }
        }
    }

    /// Starts a pipelined series of FETCH commands, at most `depth` in flight.
    pub fn fetch_stream(&mut self, commands: Vec<String>, depth: usize) -> FetchStream<'_> {
        FetchStream {
            session: self,
            queued: commands.into(),
            in_flight: VecDeque::new(),
            depth: depth.max(1),
        }
    }

    /// IDLE (RFC 2177) until the server reports something or `max` passes; returns what it
    /// reported (empty on timeout).
    pub async fn idle(&mut self, max: Duration) -> Result<Vec<Response>> {
        let tag = self.send("IDLE").await?;
        loop {
            match self.read().await? {
                Response::Continue => break,
                Response::Tagged { text, .. } => {
                    return Err(Error::Refused {
                        command: "IDLE".into(),
                        text,
                    });
                }
                other => self.unsolicited.push(other),
            }
        }
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + max;
        'wait: loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match self.read_within(left).await {
                Ok(r) => {
                    let interesting = matches!(
                        r,
                        Response::Exists(_)
                            | Response::Expunge(_)
                            | Response::Vanished { .. }
                            | Response::Fetch(_)
                            | Response::Status(_)
                            | Response::List(_)
                    );
                    events.push(r);
                    if interesting {
                        // Take the rest of the burst (EXISTS comes with RECENT, a flag
                        // change with several FETCHes), then leave IDLE to act on it.
                        for _ in 0..IDLE_BURST_MAX {
                            match self.read_within(IDLE_COALESCE).await {
                                Ok(r) => events.push(r),
                                Err(Error::Timeout) => break 'wait,
                                Err(e) => return Err(e),
                            }
                        }
                        break;
                    }
                }
                Err(Error::Timeout) => break,
                Err(e) => return Err(e),
            }
        }
        self.conn.write_all(b"DONE\r\n").await?;
        let (rest, _) = self.finish(&tag, "IDLE").await?;
        events.extend(rest);
        Ok(events)
    }

    /// RFC 5465 NOTIFY: STATUS events for every personal mailbox, mailbox name and
    /// subscription changes, on a connection with no mailbox selected.
    /// Returns what the server answered before its OK: with `STATUS`, the current STATUS
    /// of every mailbox (RFC 5465 5.1), which tells of anything that changed between an
    /// earlier pass and the moment the notifications started.
    pub async fn notify_personal(&mut self) -> Result<Vec<Response>> {
        Ok(self
            .run("NOTIFY SET STATUS (personal (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))")
            .await?
            .0)
    }

    /// Waits for the next untagged response with nothing running (after NOTIFY).
    pub async fn wait_event(&mut self, max: Duration) -> Result<Option<Response>> {
        match self.read_within(max).await {
            Ok(r) => Ok(Some(r)),
            Err(Error::Timeout) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Bytes the server sent on this connection since the last call (the login included),
    /// for the account's daily download budget.
    pub fn take_bytes_read(&mut self) -> u64 {
        self.conn.take_bytes_read()
    }

    /// The untagged responses that arrived during the commands since the last take or
    /// clear and that those commands did not consume (EXISTS, EXPUNGE, VANISHED, FETCH).
    pub fn take_unsolicited(&mut self) -> Vec<Response> {
        std::mem::take(&mut self.unsolicited)
    }

    /// Drops what arrived unsolicited: for a connection whose caller resyncs by other means
    /// (the outbox's, the priority lane's), so the buffer does not grow with every command.
    pub fn clear_unsolicited(&mut self) {
        self.unsolicited.clear();
    }

    /// Frees buffers that grew during a big command (call while idle).
    pub fn shrink_buffers(&mut self) {
        self.conn.shrink();
        self.unsolicited.shrink_to_fit();
    }

    pub async fn noop(&mut self) -> Result<Vec<Response>> {
        Ok(self.run("NOOP").await?.0)
    }

    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.run("LOGOUT")).await;
        self.conn.shutdown().await;
    }
}

/// RFC 5530 3: `[UNAVAILABLE]`, a refusal the server says is temporary.
fn unavailable(text: &str) -> bool {
    text.to_ascii_uppercase().contains("[UNAVAILABLE]")
}

/// A mailbox name as a command argument (already modified UTF-7, so ASCII).
pub fn mailbox_arg(raw: &str) -> Result<String> {
    quote(raw).ok_or_else(|| Error::Protocol("mailbox name with CR, LF or 8-bit bytes".into()))
}

/// Pipelined FETCH commands yielding their FETCH responses in order.
pub struct FetchStream<'a> {
    session: &'a mut Session,
    queued: VecDeque<String>,
    in_flight: VecDeque<String>,
    depth: usize,
}

impl FetchStream<'_> {
    /// The next FETCH response carrying a UID, or `None` when every command completed.
    pub async fn next(&mut self) -> Result<Option<Box<Fetch>>> {
        loop {
            while self.in_flight.len() < self.depth {
                let Some(cmd) = self.queued.pop_front() else {
                    break;
                };
                let tag = self.session.send(&cmd).await?;
                self.in_flight.push_back(tag);
            }
            if self.in_flight.is_empty() {
                return Ok(None);
            }
            match self.session.read().await? {
                Response::Fetch(f) if f.uid.is_some() => return Ok(Some(f)),
                Response::Tagged {
                    tag, status, text, ..
                } => {
                    if self.in_flight.front() != Some(&tag) {
                        return Err(Error::Protocol(format!("unexpected completion {tag}")));
                    }
                    self.in_flight.pop_front();
                    if status != response::Status::Ok {
                        return Err(Error::Refused {
                            command: "UID FETCH".into(),
                            text,
                        });
                    }
                }
                other => self.session.unsolicited.push(other),
            }
        }
    }
}
