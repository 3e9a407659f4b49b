//! mailtap: an HTTP forward proxy that intercepts webmail "send" requests and relays the mail
//! over a hand-written SMTP client.
pub mod smtp;
