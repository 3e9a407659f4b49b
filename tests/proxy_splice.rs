//! CONNECT tunnels carrying bulk transfers: large enough that both directions leave the small
//! buffer for the zero-copy splice path, with a half-close in the middle of the exchange.

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BULK: usize = 24 * 1024 * 1024;

/// Bytes whose value depends on position at two scales, so a dropped, doubled or reordered
/// chunk anywhere shows.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| ((i % 251) as u8) ^ ((i >> 13) as u8) ^ (seed as u8))
        .collect()
}

/// An origin that reads until the client half-closes, then sends back exactly what it got
/// followed by its own `tail`, then closes.
async fn store_then_send_origin(tail: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut got = Vec::new();
        if stream.read_to_end(&mut got).await.is_err() {
            return;
        }
        let _ = stream.write_all(&got).await;
        let _ = stream.write_all(&tail).await;
        let _ = stream.shutdown().await;
    });
    addr
}

#[tokio::test]
async fn bulk_upload_half_close_then_bulk_download_is_byte_exact() {
    // Guards the splice path and half-close: 24 MiB up, client shuts its write side, the origin
    // sees EOF (so the half-close passed), then 24 MiB + tail come back unchanged.
    let tail = pattern(12_345, 7);
    let origin = store_then_send_origin(tail.clone()).await;
    let mt = start("", None).await;
    let s = open_tunnel(mt.addr, origin).await;
    let data = pattern(BULK, 1);
    let (mut r, mut w) = s.into_split();
    let to_send = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&to_send).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut back = Vec::with_capacity(BULK + tail.len());
    tokio::time::timeout(WAIT * 3, r.read_to_end(&mut back))
        .await
        .expect("download did not finish: half-close not passed on?")
        .unwrap();
    drop(writer.await.unwrap());
    assert_eq!(back.len(), BULK + tail.len());
    assert!(back[..BULK] == data[..], "upload/download bytes changed");
    assert!(back[BULK..] == tail[..], "tail changed");
    mt.shutdown().await;
}

#[tokio::test]
async fn concurrent_bulk_echo_survives_a_half_close_mid_stream() {
    // Guards both directions spliced at once: a 24 MiB echo while sending, half-closed midway
    // through what comes back, still returns every byte in order and then ends.
    let echo = echo_server().await;
    let mt = start("", None).await;
    let s = open_tunnel(mt.addr, echo).await;
    let data = pattern(BULK, 3);
    let (mut r, mut w) = s.into_split();
    let to_send = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&to_send).await.unwrap();
        // Half-close while most of the echo is still in flight.
        w.shutdown().await.unwrap();
        w
    });
    let mut back = Vec::with_capacity(BULK);
    tokio::time::timeout(WAIT * 3, r.read_to_end(&mut back))
        .await
        .expect("echo did not finish")
        .unwrap();
    drop(writer.await.unwrap());
    assert_eq!(back.len(), BULK);
    assert!(back == data, "echoed bytes changed");
    mt.shutdown().await;
}
