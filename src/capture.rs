//! The webmail interceptor: the [`Interceptor`] that takes matched requests off the proxy's
//! streaming path, turns a "send" into a durably queued [`MailRecord`], and answers the browser.
//!
//! Owns the order of one interception: head match → capped body read (413 over the cap) →
//! extraction → upload capture/correlation → sender resolution → checks → durable enqueue →
//! the browser's answer (the rule's relay response, or the webmail's own for `tee`/`observe`).
//! It does not parse bodies (`intercept`), build MIME (`mail`), or deliver (`relay`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Limited};

use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::capture_body::{self, BodyError, BodyLimits, Budget};
use crate::intercept::extract::extract_candidates;
use crate::intercept::{
    resolve_sender, Action, Bounds, ExtractError, Extracted, MatchKind, OwnedHead, Rule, RuleSet,
    SessionBook, Ticket, UploadStore,
};
use crate::mail::record::{redact_head, MailRecord, Source};
use crate::proxy::{
    full_body, ClientInfo, Interceptor, Outcome, ProxyBody, RequestHead, ResponseHook,
};
use crate::queue::Spool;
use crate::translog::{HttpPending, HttpTimes, LogConfig, TransLog};

mod stamp;
use stamp::{response_head, stamped, ResponseLog, UploadRecord, UploadRecords};

/// Largest upload response body read to find the upload id in it (they are small JSON or
/// HTML answers; a larger declared one passes through unread).
const MAX_UPLOAD_RESPONSE: usize = 4 << 20;

/// How long the rest of an upload response may take once its head arrived.
const UPLOAD_RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What the interceptor needs from the configuration.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    /// Size and time limits of a matched body (`[limits].max_intercept_body_bytes` → 413,
    /// `[intercept].body_*` → 408).
    pub body: BodyLimits,
    /// `[intercept].max_inflight_bytes`: all intercepted bodies in flight together.
    pub budget: Budget,
    /// `[intercept].max_parts` and other decoder bounds.
    pub bounds: Bounds,
    /// `[limits].max_message_bytes`: larger rendered mails are stored rejected.
    pub max_message_bytes: u64,
    /// `[senders]`: envelope sender per webmail host pattern.
    pub senders: crate::hostpat::HostMap<String>,
    /// The SMTP account, the last resort for the envelope sender.
    pub smtp_account: Option<String>,
    /// Where each taken mail's `Log-*.txt` is created (`[paths].logs`), and its options.
    pub logs_dir: std::path::PathBuf,
    pub log: LogConfig,
    /// `[intercept].require_session`: relay only sends carrying a cookie the webmail set
    /// through mailtap.
    pub require_session: bool,
    /// `[intercept].session_ttl_secs`.
    pub session_ttl: std::time::Duration,
}

/// The interceptor. Shared by all connections.
pub struct Capture {
    rules: RuleSet,
    settings: CaptureSettings,
    uploads: Mutex<UploadStore>,
    /// What each captured upload's HTTP exchange looked like, for its send's transcript.
    upload_records: Mutex<UploadRecords>,
    /// Cookies webmail hosts set through mailtap (hashed): what binds a send to a session.
    sessions: Mutex<SessionBook>,
    spool: Spool<MailRecord>,
}

impl Capture {
    pub fn new(
        rules: RuleSet,
        uploads: UploadStore,
        settings: CaptureSettings,
        spool: Spool<MailRecord>,
    ) -> Capture {
        Capture {
            rules,
            sessions: Mutex::new(SessionBook::new(settings.session_ttl)),
            settings,
            uploads: Mutex::new(uploads),
            upload_records: Mutex::default(),
            spool,
        }
    }

    fn upload_records(&self) -> std::sync::MutexGuard<'_, UploadRecords> {
        // Every method leaves the records consistent; ignore poison.
        self.upload_records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, SessionBook> {
        // Every SessionBook method leaves it consistent, so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why a send on a webmail host must not be taken by mailtap (it then goes to the webmail
    /// unchanged, which applies its own checks): a request another site's page made, or one
    /// carrying no cookie the webmail set through mailtap. `None` = take it.
    fn refuse_reason(
        &self,
        rule: &Rule,
        parts: &http::request::Parts,
        head: &OwnedHead,
    ) -> Option<String> {
        let port = parts
            .uri
            .port_u16()
            .unwrap_or(match parts.uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
        // Another host of the same webmail (one of its patterns covers both) is its own page.
        let patterns = if rule.is_any_host() {
            self.rules.named_hosts()
        } else {
            &rule.config.hosts
        };
        let same_webmail = |other: &str| {
            patterns
                .iter()
                .any(|p| p.matches(&head.host) && p.matches(other))
        };
        if let Some(why) =
            crate::intercept::cross_site(&parts.headers, &head.host, port, same_webmail)
        {
            return Some(format!(
                "cross-site request ({why}): another site's page cannot make mailtap send mail"
            ));
        }
        if self.settings.require_session
            && !self
                .sessions()
                .knows_any(head.cookie.as_deref(), Instant::now())
        {
            return Some(format!(
                "no session cookie that {} set through mailtap: log in to the webmail with the \
                 browser using mailtap as its proxy (a session opened before mailtap started, or \
                 on another proxy, is not taken)",
                head.host
            ));
        }
        None
    }

    fn uploads(&self) -> std::sync::MutexGuard<'_, UploadStore> {
        // A panic while holding the lock leaves a consistent store (every method is atomic).
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Interceptor for Capture {
    fn wants(&self, head: &RequestHead<'_>) -> bool {
        let owned = OwnedHead::from_parts(head.method, head.uri, head.headers);
        self.rules.match_head(&owned.view()).is_some()
    }

    fn intercept(
        self: Arc<Self>,
        request: Request<Incoming>,
        info: ClientInfo,
    ) -> BoxFuture<'static, Outcome> {
        Box::pin(async move { self.handle(request, info).await })
    }

    fn pac_hosts(&self) -> Vec<crate::hostpat::HostPattern> {
        self.rules.hosts_for_https()
    }

    fn observe_response(&self, host: &str, response: &http::response::Parts) {
        let mut set = response
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .peekable();
        if set.peek().is_none() || !self.rules.is_webmail_host(host) {
            return;
        }
        let noted = self.sessions().note_set_cookies(set, Instant::now());
        tracing::debug!(%host, noted, "webmail session cookies noted (hashed)");
    }
}

/// Request bodies above this size are decoded and rendered on the blocking pool
/// ([`crate::blocking`]): a 25 MiB send takes tens of milliseconds of CPU, which would
/// otherwise stall every other connection sharing the runtime thread (one, by default on two
/// cores). Smaller ones run inline, where a thread hand-off would cost more than the work.
const INLINE_BODY_BYTES: usize = 256 * 1024;

/// Runs CPU-heavy `f` for a request body of `body_len` bytes without holding up other tasks.
/// `None` only when `f` panicked (a bug; logged by the panic hook).
async fn off_the_runtime<T: Send + 'static>(
    body_len: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if body_len > INLINE_BODY_BYTES {
        crate::blocking::run(f).await.ok()
    } else {
        Some(f())
    }
}

/// At most this many items of an attacker-sized list go into one log line.
const LOG_ITEMS: usize = 5;

/// `items` for a log line: the first few (each cut to 64 characters) and how many in all.
fn log_list(items: &[String]) -> String {
    let mut out: Vec<String> = items
        .iter()
        .take(LOG_ITEMS)
        .map(|i| match i.char_indices().nth(64) {
            Some((cut, _)) => format!("{:?}…", &i[..cut]),
            None => format!("{i:?}"),
        })
        .collect();
    if items.len() > LOG_ITEMS {
        out.push(format!("… ({} in all)", items.len()));
    }
    format!("[{}]", out.join(", "))
}

impl Capture {
    async fn handle(self: Arc<Self>, request: Request<Incoming>, info: ClientInfo) -> Outcome {
        // The proxy hands a request over as soon as its head is parsed.
        let head_at = Utc::now();
        let (parts, body) = request.into_parts();
        let head = OwnedHead::from_parts(&parts.method, &parts.uri, &parts.headers);
        let Some(matched) = self.rules.match_head(&head.view()) else {
            // `wants` said yes on the same head; nothing else can change the answer.
            return forward_bytes(parts, body.boxed());
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let read = capture_body::read(body, declared, &self.settings.body, &self.settings.budget);
        // `_reservation` holds this body's share of the budget until the request is answered
        // (decoding, rendering and queueing all happen before that).
        let (body, _reservation) = match read.await {
            Ok(read) => read,
            Err(e) => return body_refused(&head, &e),
        };
        let times = HttpTimes {
            head: head_at,
            body: Utc::now(),
            body_bytes: body.len(),
        };
        let extracted = {
            let (this, matched, head, body) =
                (self.clone(), matched.clone(), head.clone(), body.clone());
            off_the_runtime(body.len(), move || {
                extract_candidates(
                    this.rules.rules(),
                    &matched,
                    &head.view(),
                    &body,
                    &this.settings.bounds,
                )
                .map(|(rule, x)| (rule.map(|r| r.name().to_string()), x))
            })
            .await
        };
        let Some(extracted) = extracted else {
            tracing::error!(host = %head.host, "extraction failed; forwarded unchanged");
            return forward_bytes(parts, full_body(body));
        };
        let (rule, extracted) = match extracted {
            Ok((Some(name), x)) => match self.rules.get(&name) {
                Some(rule) => (rule, x),
                None => return forward_bytes(parts, full_body(body)),
            },
            Ok((None, _)) => return forward_bytes(parts, full_body(body)),
            Err(ExtractError::TooManyParts { limit }) => return too_many_parts(&head, limit),
            Err(e) => {
                // A matched head whose body does not decode: the webmail gets it untouched,
                // so the user's mail is not lost — it is just not intercepted.
                let error = log_list(&[e.to_string()]);
                tracing::warn!(host = %head.host, path = %head.path, %error, "matched request did not decode; forwarded unchanged");
                return forward_bytes(parts, full_body(body));
            }
        };
        match (matched.kind, extracted) {
            (MatchKind::Upload, Extracted::Upload(files, key)) => {
                let count = files.len();
                let captured = {
                    let mut uploads = self.uploads();
                    uploads.expire(Instant::now());
                    uploads.capture(rule.upload_group(), &key, files, Instant::now())
                };
                // The upload always reaches the webmail; only mailtap's copy may be refused.
                let on_response = match captured {
                    Ok(ticket) => {
                        tracing::info!(rule = rule.name(), files = count, "upload captured");
                        self.upload_records().insert(
                            ticket,
                            UploadRecord {
                                ends: (info.client, info.proxy),
                                head: redact_head(&parts.method, &parts.uri, &parts.headers),
                                times,
                                response: None,
                            },
                        );
                        Some(self.clone().upload_hook(rule.name().to_string(), ticket))
                    }
                    Err(e) => {
                        tracing::warn!(rule = rule.name(), error = %e, "upload not captured");
                        None
                    }
                };
                let mut parts = parts;
                if on_response.is_some() {
                    // The id is read from the response body: ask for it uncompressed.
                    parts.headers.insert(
                        header::ACCEPT_ENCODING,
                        HeaderValue::from_static("identity"),
                    );
                }
                Outcome::Forward {
                    request: Request::from_parts(parts, full_body(body)),
                    on_response,
                }
            }
            (_, Extracted::Send(draft)) => {
                self.send(rule, draft, parts, body, (info, times), &head)
                    .await
            }
            _ => forward_bytes(parts, full_body(body)),
        }
    }

    async fn send(
        &self,
        rule: &Rule,
        draft: crate::intercept::MailDraft,
        parts: http::request::Parts,
        body: Bytes,
        (info, times): (ClientInfo, HttpTimes),
        head: &OwnedHead,
    ) -> Outcome {
        let action = rule.config.action;
        if action != Action::Observe {
            if let Some(why) = self.refuse_reason(rule, &parts, head) {
                tracing::warn!(
                    rule = rule.name(), host = %head.host, path = %head.path, reason = %why,
                    "send NOT taken by mailtap; forwarded to the webmail unchanged"
                );
                return forward_bytes(parts, full_body(body));
            }
        }
        let relay_response = (action == Action::Relay)
            .then(|| rule.relay_response(&draft))
            .flatten();
        let sender = resolve_sender(
            draft.from.as_ref(),
            rule.config.sender.as_deref(),
            &self.settings.senders,
            &head.host,
            self.settings.smtp_account.as_deref(),
        );
        let body_len = body.len();
        let taken = {
            let mut uploads = self.uploads();
            uploads.expire(Instant::now());
            uploads.take_for(rule, &draft)
        };
        if !taken.missing.is_empty() {
            tracing::warn!(rule = rule.name(), count = taken.missing.len(), missing = %log_list(&taken.missing), "send refers to uploads mailtap did not see");
            if action == Action::Relay {
                // Relaying now would drop files the user attached: the webmail, which has
                // them, sends this one itself.
                tracing::warn!(
                    rule = rule.name(),
                    "forwarding the send to the webmail unchanged"
                );
                return forward_bytes(parts, full_body(body));
            }
        }
        // A relayed send is answered by mailtap: the request body is not needed any more, so
        // it leaves memory before the mail is rendered (tee and observe forward it later).
        let body = (action != Action::Relay).then_some(body);
        let forward_body = |body: Option<Bytes>| full_body(body.unwrap_or_default());
        let source = Source {
            rule: rule.name().to_string(),
            webmail_host: head.host.clone(),
            client: info.client,
            proxy: info.proxy,
        };
        let http_head = redact_head(&parts.method, &parts.uri, &parts.headers);
        let upload_records = self.upload_records().take(&taken.tickets);
        let record = draft.into_record(taken.files, sender, source, Utc::now(), http_head);
        let max_message = self.settings.max_message_bytes;
        let rendered = off_the_runtime(body_len, move || {
            let mut record = record;
            let message = crate::mail::check(&mut record, max_message)
                .or_else(|| crate::mail::build::render(&record).ok())
                .unwrap_or_default();
            (record, message)
        })
        .await;
        let Some((mut record, message)) = rendered else {
            tracing::error!(rule = rule.name(), "rendering an intercepted mail failed");
            return Outcome::Respond(crate::proxy::error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "mailtap could not render this mail, so it was NOT sent",
            ));
        };
        tracing::info!(
            id = %record.id, rule = rule.name(), ?action,
            sender = %record.sender, sender_source = ?record.sender_source,
            recipients = record.recipients().count(), bytes = message.len(),
            rejected = record.rejected.as_ref().map(|r| r.reason.as_str()),
            invalid_recipients = record.invalid_recipients.len(),
            "webmail send intercepted"
        );
        if action == Action::Observe {
            return forward_bytes(parts, forward_body(body));
        }
        if let Some(reason) = unreportable(&record) {
            // Neither the mail nor an error report about it could reach anyone: say so now.
            tracing::warn!(id = %record.id, %reason, "send refused: no usable sender");
            if action == Action::Tee {
                return forward_bytes(parts, forward_body(body));
            }
            return Outcome::Respond(crate::proxy::error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "this mail was NOT sent: {reason}. Configure the sender for {host} in \
                     [senders] (e.g. \"{host}\" = \"you@example.com\") and send it again.",
                    host = head.host
                ),
            ));
        }
        // The mail is taken: its one transcript starts here, with the request as it arrived.
        let mut transcript = self.start_transcript(&mut record, &info, &times, &upload_records);
        let response = match action {
            Action::Relay => Some(match relay_response {
                Some(r) => {
                    let mut response = Response::new(full_body(r.body));
                    *response.status_mut() =
                        StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
                    for (name, value) in r.headers {
                        if let (Ok(n), Ok(v)) =
                            (HeaderName::try_from(name), HeaderValue::try_from(value))
                        {
                            response.headers_mut().append(n, v);
                        }
                    }
                    response
                }
                // A rule without [rule.response]: mailtap still answers (never forwards, or
                // the webmail would send the mail a second time).
                None => {
                    let mut response = Response::new(full_body(format!(
                        "mailtap: the mail was accepted and queued for delivery ({})\n",
                        record.id
                    )));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    response
                }
            }),
            _ => None,
        };
        let response = response.map(complete_head);
        if let Some(response) = &response {
            record.http_response_head = response_head(response);
        }
        // The durability line: the browser hears "sent" only once the mail is on disk.
        let record_id = record.id.clone();
        let stored = match crate::queue::MailId::parse(&record_id) {
            Ok(id) => {
                self.spool
                    .enqueue_owned_as(id, record, message, Utc::now())
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            tracing::error!(id = %record_id, error = %e, "could not store an intercepted mail");
            if let Some((log, _)) = transcript.as_mut() {
                log.note(&format!(
                    "the mail could not be stored, so it was not sent: {e}"
                ));
            }
            let refusal = complete_head(crate::proxy::error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the mail could not be stored, so it was not sent: {e}"),
            ));
            return Outcome::Respond(self.log_response(refusal, transcript, &info));
        }
        match response {
            Some(response) => Outcome::Respond(self.log_response(response, transcript, &info)),
            None => {
                // tee: the webmail answers; its response goes into the transcript as written.
                let ends = (info.client, info.proxy);
                let on_response = transcript.map(|(log, pending)| {
                    let path = log.path().to_path_buf();
                    drop(log);
                    let config = self.settings.log.clone();
                    let hook: ResponseHook = Box::new(move |response: Response<ProxyBody>| {
                        Box::pin(async move {
                            let log = ResponseLog {
                                path,
                                config,
                                ends,
                                pending,
                            };
                            stamped(response, log)
                        })
                    });
                    hook
                });
                Outcome::Forward {
                    request: Request::from_parts(parts, forward_body(body)),
                    on_response,
                }
            }
        }
    }

    /// Creates the mail's `Log-*.txt` with the HTTP request (and the time the head arrived and
    /// the body was complete), names it in `record.transcript`, and marks its HTTP part as in
    /// progress. `None` (and a warning) when the logs directory cannot be written.
    fn start_transcript(
        &self,
        record: &mut MailRecord,
        info: &ClientInfo,
        times: &HttpTimes,
        uploads: &[UploadRecord],
    ) -> Option<(TransLog, HttpPending)> {
        let created = TransLog::create_for_mail(
            &self.settings.logs_dir,
            times.body,
            &record.id,
            &self.settings.log,
        );
        let mut log = match created {
            Ok(log) => log,
            Err(e) => {
                tracing::warn!(id = %record.id, error = %e, logs = %self.settings.logs_dir.display(), "cannot create the mail's transcript");
                return None;
            }
        };
        for u in uploads {
            let response = u.response.as_ref().map(|(h, at)| (h.as_str(), *at));
            log.http_upload(u.ends, &u.head, u.times, response);
        }
        log.http_request((info.client, info.proxy), &record.http_head, *times);
        record.transcript = log
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let pending = HttpPending::new(&record.id);
        Some((log, pending))
    }

    /// `response` wrapped so its head and the time it was written reach the transcript.
    fn log_response(
        &self,
        response: Response<ProxyBody>,
        transcript: Option<(TransLog, HttpPending)>,
        info: &ClientInfo,
    ) -> Response<ProxyBody> {
        let Some((log, pending)) = transcript else {
            return response;
        };
        let path = log.path().to_path_buf();
        if let Err(e) = log.finish() {
            tracing::warn!(path = %path.display(), error = %e, "transcript incomplete");
        }
        stamped(
            response,
            ResponseLog {
                path,
                config: self.settings.log.clone(),
                ends: (info.client, info.proxy),
                pending,
            },
        )
    }

    /// After an upload reaches the webmail: read the id it assigned from its response.
    fn upload_hook(self: Arc<Self>, rule: String, ticket: Ticket) -> ResponseHook {
        Box::new(move |response: Response<ProxyBody>| {
            Box::pin(async move {
                let declared = response
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok());
                if declared.is_some_and(|n| n > MAX_UPLOAD_RESPONSE) {
                    // Too big to be an id answer: the browser gets it untouched, streamed.
                    tracing::warn!(%rule, "upload response too large to read an id from; passed through");
                    return response;
                }
                let (parts, body) = response.into_parts();
                let read = Limited::new(body, MAX_UPLOAD_RESPONSE).collect();
                let bytes = match tokio::time::timeout(UPLOAD_RESPONSE_TIMEOUT, read).await {
                    Ok(Ok(c)) => c.to_bytes(),
                    Ok(Err(e)) => {
                        tracing::warn!(%rule, error = %e, "upload response unreadable; id not noted");
                        return crate::proxy::error_response(
                            StatusCode::BAD_GATEWAY,
                            &format!("upload response: {e}"),
                        );
                    }
                    Err(_) => {
                        tracing::warn!(%rule, "upload response too slow; id not noted");
                        return crate::proxy::error_response(
                            StatusCode::GATEWAY_TIMEOUT,
                            "the webmail's answer to the upload did not arrive in time",
                        );
                    }
                };
                if let Some(r) = self.rules.get(&rule) {
                    let noted = self.uploads().note_response(ticket, r, &bytes);
                    tracing::debug!(%rule, noted, "upload ids noted");
                }
                let response = Response::from_parts(parts, full_body(bytes));
                self.upload_records()
                    .responded(ticket, response_head(&response), Utc::now());
                response
            })
        })
    }
}

/// Why a rejected record could not even be reported (no sender, or an invalid one): such a
/// mail must be refused to the browser instead of queued.
fn unreportable(record: &MailRecord) -> Option<String> {
    use crate::mail::record::RejectionKind;
    let rejection = record.rejected.as_ref()?;
    match &rejection.kind {
        RejectionKind::NoSender => Some(rejection.reason.clone()),
        RejectionKind::InvalidAddress { addr } if *addr == record.sender => {
            Some(rejection.reason.clone())
        }
        _ => None,
    }
}

/// The request goes on to the webmail as it came (body already read or still streaming).
fn forward_bytes(parts: http::request::Parts, body: ProxyBody) -> Outcome {
    Outcome::Forward {
        request: Request::from_parts(parts, body),
        on_response: None,
    }
}

/// The browser's answer when its body was not read: 413 (too large), 408 (too slow), 503 (no
/// room in the budget) or 400 (aborted). Nothing was forwarded or queued; the connection is
/// closed (the rest of the body is never read).
fn body_refused(head: &OwnedHead, e: &BodyError) -> Outcome {
    let (status, text) = match e {
        BodyError::TooLarge { limit } => {
            tracing::warn!(host = %head.host, path = %head.path, limit, "intercepted request body over the limit: 413");
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "this webmail request is larger than {limit} bytes \
                     ([limits].max_intercept_body_bytes); nothing was sent or forwarded"
                ),
            )
        }
        BodyError::TooSlow { .. } => {
            tracing::warn!(host = %head.host, path = %head.path, error = %e, "intercepted request body too slow: 408");
            (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "this webmail request's body arrived too slowly ({e}; see \
                     [intercept].body_timeout_secs, body_min_rate, body_max_secs); nothing was \
                     sent or forwarded"
                ),
            )
        }
        BodyError::NoBudget { .. } => {
            tracing::warn!(host = %head.host, path = %head.path, error = %e, "intercept budget spent: 503");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "mailtap is busy with other large webmail requests ({e}; see \
                     [intercept].max_inflight_bytes); nothing was sent or forwarded — send it \
                     again in a moment"
                ),
            )
        }
        BodyError::Read(_) => {
            tracing::info!(host = %head.host, error = %e, "browser aborted an intercepted request");
            (
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            )
        }
    };
    let mut response = crate::proxy::error_response(status, &text);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Outcome::Respond(response)
}

fn too_many_parts(head: &OwnedHead, limit: usize) -> Outcome {
    tracing::warn!(host = %head.host, path = %head.path, limit, "intercepted request has too many parts: 413");
    Outcome::Respond(crate::proxy::error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "this webmail request has more than {limit} parts, fields or values \
             ([intercept].max_parts); nothing was sent or forwarded"
        ),
    ))
}

/// `response` with the fields the server would otherwise add on the way out (`Date`, and
/// `Content-Length` for a body of known size) set now, so the head recorded for the transcript
/// is the whole head the browser receives.
fn complete_head(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    use hyper::body::Body as _;
    let h = response.headers_mut();
    if !h.contains_key(header::DATE) {
        // RFC 9110 §5.6.7 IMF-fixdate.
        let now = Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        if let Ok(v) = HeaderValue::from_str(&now) {
            h.insert(header::DATE, v);
        }
    }
    if let Some(n) = response.body().size_hint().exact() {
        response
            .headers_mut()
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(n));
    }
    response
}
