//! `seal send` and `seal listen`: text messages over the chat server.
//!
//! Until end-to-end encryption lands in the client (issue 8), a text travels as its UTF-8
//! bytes: the server neither reads nor interprets a body, but it is not yet encrypted.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealpost_client::{
    Answer, ChatEvent, ChatOptions, ChatSession, Client, ClientError, Content, Stored,
};
use sealpost_proto::{DeviceKey, Envelope, ReceiptStatus};
use serde_json::json;

use super::Failure;

/// Sends `text` to every device of the account with phone number `to`; prints its server id.
pub(crate) async fn send(client: &Client, to: &str, text: &str) -> Result<(), Failure> {
    let recipient = client.lookup(to).await?;
    let mut chat = client.chat(ChatOptions::default()).await?;
    let (me, my_device) = connected(&mut chat).await?;
    let id = format!("{:032x}", rand::random::<u128>());
    let mut devices = recipient.devices;
    // A mismatch names the devices to write to; a second one means they changed again.
    for _ in 0..3 {
        let envelopes = envelopes(
            &devices,
            text,
            (recipient.account_id == me).then_some(my_device),
        );
        match answer(&chat, &id, &recipient.account_id, envelopes).await? {
            Answer::Sent { server_id, .. } => {
                println!("{server_id}");
                eprintln!("sent to {to} ({} devices)", devices.len());
                return Ok(chat.close().await?);
            }
            Answer::Mismatch { devices: now } => devices = now,
            Answer::GroupMismatch { .. } => break,
        }
    }
    Err(Failure(
        format!("the devices of {to} keep changing; try again"),
        1,
    ))
}

/// Sends, waiting out rate limits the server names.
async fn answer(
    chat: &ChatSession,
    id: &str,
    to: &str,
    envelopes: Vec<Envelope>,
) -> Result<Answer, Failure> {
    loop {
        match chat.send(id, to, envelopes.clone()).await {
            Err(ClientError::Chat {
                retry_after: Some(seconds),
                ..
            }) => {
                eprintln!("rate-limited; sending again in {seconds} s");
                tokio::time::sleep(Duration::from_secs(seconds)).await;
            }
            other => return Ok(other?),
        }
    }
}

fn envelopes(devices: &[DeviceKey], text: &str, skip: Option<u32>) -> Vec<Envelope> {
    let body = STANDARD.encode(text);
    devices
        .iter()
        .filter(|d| Some(d.device_id) != skip)
        .map(|d| Envelope {
            device_id: d.device_id,
            body: body.clone(),
        })
        .collect()
}

/// Waits for the session's first `hello`; this account and device.
async fn connected(chat: &mut ChatSession) -> Result<(String, u32), Failure> {
    while let Some(event) = chat.next().await {
        if let ChatEvent::Connected {
            account_id,
            device_id,
            ..
        } = event
        {
            return Ok((account_id, device_id));
        }
    }
    Err(Failure("the chat session ended at once".to_owned(), 1))
}

/// Prints what arrives (as JSON lines with `json`), answers each message with a `delivered`
/// receipt and acknowledges it; stops after `count` stored frames, or at Ctrl-C.
pub(crate) async fn listen(client: &Client, count: Option<u64>, json: bool) -> Result<(), Failure> {
    let mut chat = client.chat(ChatOptions::default()).await?;
    let (me, _) = connected(&mut chat).await?;
    eprintln!("listening as {me}; Ctrl-C to stop");
    let mut taken = 0u64;
    while count.is_none_or(|n| taken < n) {
        let event = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = chat.next() => event,
        };
        let Some(event) = event else { break };
        match event {
            ChatEvent::Stored(stored) => {
                let seq = stored.seq;
                taken += 1;
                if matches!(stored.content, Content::Message { .. }) && stored.from.account_id != me
                {
                    deliver_receipt(&chat, &stored).await;
                }
                print_stored(&stored, json);
                chat.ack(seq);
            }
            ChatEvent::Connected {
                pending, dropped, ..
            } => {
                eprintln!("connected again; {pending} waiting");
                if dropped > 0 {
                    eprintln!("{dropped} messages expired unread while this device was away");
                }
            }
            ChatEvent::Typing { from, group, state } => match group {
                Some(group) => eprintln!("{} is typing in {group}: {state:?}", from.account_id),
                None => eprintln!("{} is typing: {state:?}", from.account_id),
            },
            ChatEvent::KeysLow { one_time_keys } => {
                eprintln!("the server holds only {one_time_keys} one-time keys for this device");
            }
            ChatEvent::Disconnected { reason, retry_in } => {
                eprintln!("disconnected ({reason}); connecting again in {retry_in:.1?}");
            }
        }
    }
    Ok(chat.close().await?)
}

async fn deliver_receipt(chat: &ChatSession, stored: &Stored) {
    let id = format!("r-{}", stored.server_id);
    let ids = vec![stored.server_id.clone()];
    if let Err(e) = chat
        .receipt(&id, &stored.from.account_id, ReceiptStatus::Delivered, ids)
        .await
    {
        eprintln!("cannot send a delivered receipt: {e}");
    }
}

fn print_stored(stored: &Stored, as_json: bool) {
    let from = &stored.from;
    let line = match &stored.content {
        Content::Message { group, body } => {
            let text = String::from_utf8_lossy(body);
            if as_json {
                json!({"type": "message", "server_id": stored.server_id, "from": from.account_id,
                       "device": from.device_id, "timestamp": stored.timestamp, "group": group,
                       "text": text})
                .to_string()
            } else {
                let place = group
                    .as_ref()
                    .map(|g| format!(" in {g}"))
                    .unwrap_or_default();
                format!("{}/{}{place}: {text}", from.account_id, from.device_id)
            }
        }
        Content::Receipt { status, ids } => {
            if as_json {
                json!({"type": "receipt", "from": from.account_id, "status": status, "ids": ids})
                    .to_string()
            } else {
                format!("{status:?} by {}: {}", from.account_id, ids.join(", "))
            }
        }
        Content::Group {
            group,
            change,
            members,
            ..
        } => {
            if as_json {
                json!({"type": "group", "group": group, "change": change, "members": members,
                       "by": from.account_id})
                .to_string()
            } else {
                format!(
                    "group {group}: {change:?} {} (by {})",
                    members.join(", "),
                    from.account_id
                )
            }
        }
    };
    println!("{line}");
}
