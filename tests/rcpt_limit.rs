//! RFC 5321 §4.5.3.1.10: a server that takes only N recipients per transaction answers the
//! rest `452 4.5.3`; mailtap sends them at once in further transactions, not after a back-off.

mod common;
#[path = "common/smtp_script.rs"]
mod smtp_script;
#[path = "common/webmail.rs"]
mod webmail;

use common::*;
use mailtap::queue::MailState;
use smtp_script::{e, r, rs, ScriptServer, Step};
use webmail::{roundcube_send, webmail_config};

const SENDER: &str = "lilei@example.com";

/// A server that takes at most `limit` recipients per transaction, for a mail to `rcpts`.
fn limited_server(rcpts: &[&str], limit: usize) -> Vec<Step> {
    let mut steps = vec![
        r("220 limited.test ESMTP"),
        e("EHLO mailtap"),
        rs(&["250-limited.test", "250 ENHANCEDSTATUSCODES"]),
    ];
    for (i, batch) in rcpts.chunks(limit).enumerate() {
        if i > 0 {
            steps.push(e("RSET"));
            steps.push(r("250 2.0.0 Ok"));
        }
        steps.push(e(&format!("MAIL FROM:<{SENDER}>")));
        steps.push(r("250 2.1.0 Ok"));
        let offered = &rcpts[i * limit..];
        for (j, rc) in offered.iter().enumerate() {
            steps.push(e(&format!("RCPT TO:<{rc}>")));
            if j < batch.len() {
                steps.push(r("250 2.1.5 Ok"));
            } else {
                steps.push(r("452 4.5.3 Too many recipients"));
            }
        }
        steps.push(e("DATA"));
        steps.push(r("354 go ahead"));
        steps.push(Step::ExpectData);
        steps.push(r(&format!("250 2.0.0 Ok: queued as batch{i}")));
    }
    steps.push(e("QUIT"));
    steps.push(r("221 2.0.0 Bye"));
    steps
}

#[tokio::test]
async fn recipients_over_the_servers_limit_go_in_further_transactions_at_once() {
    // Guards 452 4.5.3 handling: 5 recipients, 2 per transaction → 3 transactions in one
    // session, all delivered in the first attempt (nothing deferred, no report).
    let rcpts = [
        "a@example.org",
        "b@example.org",
        "c@example.org",
        "d@example.org",
        "e@example.org",
    ];
    let srv = ScriptServer::start(limited_server(&rcpts, 2), None).await;
    let config = format!(
        "{}[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nhelo_name = \"mailtap\"\n",
        webmail_config(SENDER, &[]),
        srv.addr.port()
    );
    let mt = start(&config, None).await;
    log_in(mt.addr, webmail::WEBMAIL_HOST, webmail::SESSION_COOKIE).await;
    raw_exchange(
        mt.addr,
        &roundcube_send(&rcpts.join(", "), "", "many", "hello"),
    )
    .await;
    let settled = settled_mails(&mt.spool).await;
    assert_eq!(settled.len(), 1);
    let (id, state, _) = &settled[0];
    assert_eq!(*state, MailState::Delivered, "{settled:?}");
    let meta = mt.spool.get(id).await.unwrap().unwrap();
    assert_eq!(meta.attempts, 1);
    assert_eq!(
        mt.spool.count(MailState::Active) + mt.spool.count(MailState::Deferred),
        0
    );
    let rec = srv.finish().await;
    assert_eq!(rec.error, None, "{}", rec.text());
    mt.shutdown().await;
}
