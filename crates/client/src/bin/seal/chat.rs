//! `seal send` and `seal listen`: end-to-end encrypted messages over the chat server. Each
//! recipient device gets its own Olm-encrypted copy of the message's plaintext; a group
//! message is encrypted once with this device's Megolm session for the group (docs/e2e.md).
//! This device's keys are published (and topped up) whenever a session starts.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use sealpost_client::{
    Answer, ChatEvent, ChatOptions, ChatSession, Client, ClientError, Content, E2e, Stored,
};
use sealpost_proto::{GroupChange, MediaRef, MemberDevice, Plaintext, ReceiptStatus};
use serde_json::json;

use super::Failure;

/// This device's end-to-end state (in `dir/e2e`), its keys published and topped up. Waits
/// up to 10 s for another process of this device to let go of it (a `seal listen` whose
/// connection this process's chat session just replaced ends by itself).
async fn end_to_end(
    client: &Client,
    dir: &Path,
    key: &SigningKey,
    me: &str,
    my_device: u32,
) -> Result<E2e, Failure> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut e2e = loop {
        match E2e::open(&dir.join("e2e"), me, my_device, key) {
            Err(ClientError::StateInUse(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other?,
        }
    };
    e2e.publish(client, None).await?;
    Ok(e2e)
}

/// Whom `seal send` writes to.
pub(crate) enum To {
    /// Every device of the account with this phone number.
    Phone(String),
    /// Every member device of this group.
    Group(String),
}

/// Sends `message`, end-to-end encrypted, to `to`; prints its server id.
pub(crate) async fn send(
    client: &Client,
    dir: &Path,
    key: &SigningKey,
    to: &To,
    message: &Plaintext,
) -> Result<(), Failure> {
    let mut chat = client.chat(ChatOptions::default()).await?;
    let (me, my_device) = connected(&mut chat).await?;
    let mut e2e = end_to_end(client, dir, key, &me, my_device).await?;
    let plaintext = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    let id = format!("{:032x}", rand::random::<u128>());
    let (name, sent) = match to {
        To::Phone(phone) => {
            let sent = send_direct(client, &chat, &mut e2e, &id, phone, &plaintext).await?;
            (phone, sent)
        }
        To::Group(group) => {
            let sent = send_to_group(client, &chat, &mut e2e, &id, group, &plaintext).await?;
            (group, sent)
        }
    };
    let Some((server_id, devices)) = sent else {
        return Err(Failure(
            format!("the devices of {name} keep changing; try again"),
            1,
        ));
    };
    println!("{server_id}");
    eprintln!("sent to {name} ({devices} devices)");
    Ok(chat.close().await?)
}

/// Sends to every device of the account with phone number `phone`, following `mismatch`
/// answers (a third one means the devices keep changing: `None`); the server id and the
/// number of devices.
async fn send_direct(
    client: &Client,
    chat: &ChatSession,
    e2e: &mut E2e,
    id: &str,
    phone: &str,
    plaintext: &[u8],
) -> Result<Option<(String, usize)>, Failure> {
    let recipient = client.lookup(phone).await?;
    let account = recipient.account_id;
    let mut devices: Vec<u32> = recipient.devices.iter().map(|d| d.device_id).collect();
    for _ in 0..3 {
        let envelopes = e2e.encrypt(client, &account, &devices, plaintext).await?;
        match answered(|| chat.send(id, &account, envelopes.clone())).await? {
            Answer::Sent { server_id, .. } => return Ok(Some((server_id, envelopes.len()))),
            Answer::Mismatch { devices: now } => {
                devices = now.iter().map(|d| d.device_id).collect();
            }
            Answer::GroupMismatch { .. } => break,
        }
    }
    Ok(None)
}

/// Sends to every member device of `group` with this device's group session, starting with
/// the devices that session went to and following the server's `group_mismatch` answers.
async fn send_to_group(
    client: &Client,
    chat: &ChatSession,
    e2e: &mut E2e,
    id: &str,
    group: &str,
    plaintext: &[u8],
) -> Result<Option<(String, usize)>, Failure> {
    let mut devices = e2e.group_devices(group);
    for _ in 0..3 {
        let envelopes = e2e
            .encrypt_group(client, group, &devices, plaintext)
            .await?;
        match answered(|| chat.send_group(id, group, envelopes.clone())).await? {
            Answer::Sent { server_id, .. } => {
                e2e.group_sent(group, &envelopes)?;
                return Ok(Some((server_id, envelopes.len())));
            }
            Answer::GroupMismatch { devices: now, .. } => {
                devices = now.into_iter().map(MemberDevice::from).collect();
            }
            Answer::Mismatch { .. } => break,
        }
    }
    Ok(None)
}

/// Sends with `send`, waiting out rate limits the server names.
async fn answered<F, Fut>(mut send: F) -> Result<Answer, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Answer, ClientError>>,
{
    loop {
        match send().await {
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

/// How `seal listen` runs.
pub(crate) struct Listening {
    /// Stop after this many stored frames.
    pub(crate) count: Option<u64>,
    /// One JSON object a line.
    pub(crate) json: bool,
    /// Where to save attachments.
    pub(crate) save_to: Option<PathBuf>,
}

/// Prints what arrives (as JSON lines with `json`), decrypting each message, answers each with
/// a `delivered` receipt and acknowledges it; with `save_to`, saves each message's attachments
/// there and then answers `read`. Stops after `count` stored frames, or at Ctrl-C.
pub(crate) async fn listen(
    client: &Client,
    dir: &Path,
    key: &SigningKey,
    listening: Listening,
) -> Result<(), Failure> {
    let Listening {
        count,
        json,
        save_to,
    } = listening;
    let mut chat = client.chat(ChatOptions::default()).await?;
    let (me, my_device) = connected(&mut chat).await?;
    let mut e2e = end_to_end(client, dir, key, &me, my_device).await?;
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
                if let Content::Group {
                    group,
                    change: GroupChange::Removed | GroupChange::Left,
                    members,
                    ..
                } = &stored.content
                    && members.contains(&me)
                    && let Err(e) = e2e.forget_group(group)
                {
                    eprintln!("cannot forget the keys of {group}: {e}");
                }
                if let Content::Group {
                    group,
                    change: GroupChange::Invited,
                    members,
                    ..
                } = &stored.content
                    && members.contains(&me)
                {
                    let group = printable(group);
                    eprintln!(
                        "you are invited to group {group}: `seal group join {group}` or `seal group decline {group}`"
                    );
                }
                let opened = match &stored.content {
                    Content::Message { .. } => Some(
                        open(client, &mut e2e, &stored)
                            .await
                            .map_err(|e| e.to_string()),
                    ),
                    _ => None,
                };
                let from_other = stored.from.account_id != me;
                if opened.as_ref().is_some_and(Result::is_ok) && from_other {
                    send_receipt(&chat, &stored, ReceiptStatus::Delivered).await;
                }
                print_stored(&stored, opened.as_ref(), json);
                if let (Some(dir), Some(Ok(message))) = (&save_to, &opened)
                    && save_all(client, dir, &message.attachments, json).await
                    && from_other
                {
                    send_receipt(&chat, &stored, ReceiptStatus::Read).await;
                }
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
                Some(group) => eprintln!(
                    "{} is typing in {}: {state:?}",
                    printable(&from.account_id),
                    printable(&group)
                ),
                None => eprintln!("{} is typing: {state:?}", printable(&from.account_id)),
            },
            ChatEvent::KeysLow { one_time_keys } => {
                if let Err(e) = e2e.publish(client, Some(one_time_keys)).await {
                    eprintln!("cannot publish more one-time keys: {e}");
                }
            }
            ChatEvent::Disconnected { reason, retry_in } => {
                eprintln!("disconnected ({reason}); connecting again in {retry_in:.1?}");
            }
        }
    }
    Ok(chat.close().await?)
}

async fn send_receipt(chat: &ChatSession, stored: &Stored, status: ReceiptStatus) {
    let id = format!("{status:?}-{}", stored.server_id).to_lowercase();
    let ids = vec![stored.server_id.clone()];
    if let Err(e) = chat
        .receipt(&id, &stored.from.account_id, status, ids)
        .await
    {
        eprintln!("cannot send a {status:?} receipt: {e}");
    }
}

/// Downloads, verifies and opens every attachment into `dir` (a MediaRef file next to each);
/// true if all were saved.
async fn save_all(client: &Client, dir: &Path, attachments: &[MediaRef], json: bool) -> bool {
    let mut all = true;
    for media in attachments {
        match save(client, dir, media).await {
            Ok(path) => {
                if json {
                    println!(
                        "{}",
                        json!({"type": "saved", "path": path, "blob_id": media.blob_id, "size": media.size})
                    );
                } else {
                    let path = path.display().to_string();
                    eprintln!(
                        "saved {} ({} bytes, verified)",
                        printable(&path),
                        media.size
                    );
                }
            }
            Err(e) => {
                all = false;
                eprintln!(
                    "cannot save attachment {}: {}",
                    printable(&media.blob_id),
                    printable(&e.0)
                );
            }
        }
    }
    all
}

/// Saves one attachment under its sender's file name (made safe, never over another file).
async fn save(client: &Client, dir: &Path, media: &MediaRef) -> Result<PathBuf, Failure> {
    media.validate().map_err(|e| Failure(e.to_string(), 1))?;
    std::fs::create_dir_all(dir)?;
    let name = media
        .filename
        .as_deref()
        .and_then(|n| Path::new(n).file_name())
        .and_then(|n| n.to_str())
        .filter(|n| !n.starts_with('.'))
        .unwrap_or("attachment")
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect::<String>();
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), format!(".{ext}")),
        _ => (name.clone(), String::new()),
    };
    let mut path = dir.join(&name);
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{stem}-{n}{extension}"));
        n += 1;
    }
    client.download_decrypted(media, &path).await?;
    let reference = path.with_file_name(format!(
        "{}.ref.json",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("attachment")
    ));
    sealpost_client::write_private_json(&reference, media)?;
    Ok(path)
}

/// A message's plaintext, decrypted.
async fn open(client: &Client, e2e: &mut E2e, stored: &Stored) -> Result<Plaintext, ClientError> {
    let bytes = e2e.open_message(client, stored).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::E2e(format!("the decrypted message is not a message: {e}")))
}

/// Prints a stored frame; `opened` is a message's decrypted plaintext, or why it is not.
fn print_stored(stored: &Stored, opened: Option<&Result<Plaintext, String>>, as_json: bool) {
    let from = &stored.from;
    let line = match &stored.content {
        Content::Message { group, .. } => {
            let (text, attachments, reply_to, error) = match opened {
                Some(Ok(message)) => (
                    message.text.clone(),
                    message.attachments.clone(),
                    message.reply_to.clone(),
                    None,
                ),
                Some(Err(e)) => (None, Vec::new(), None, Some(e.clone())),
                None => (None, Vec::new(), None, None),
            };
            if as_json {
                json!({"type": "message", "server_id": stored.server_id, "from": from.account_id,
                       "device": from.device_id, "timestamp": stored.timestamp, "group": group,
                       "text": text, "attachments": attachments, "reply_to": reply_to,
                       "error": error})
                .to_string()
            } else {
                let place = group
                    .as_ref()
                    .map(|g| format!(" in {g}"))
                    .unwrap_or_default();
                let said = match (&text, &error) {
                    (_, Some(e)) => format!("[cannot decrypt: {e}]"),
                    (Some(text), None) => text.clone(),
                    (None, None) => String::new(),
                };
                let files = attachments
                    .iter()
                    .map(|a| format!(" [{} {} bytes]", a.mime, a.size))
                    .collect::<String>();
                let answering = reply_to
                    .map(|id| format!(" (answering {id})"))
                    .unwrap_or_default();
                format!(
                    "{}/{}{place}{answering}: {said}{files}",
                    from.account_id, from.device_id
                )
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
    if as_json {
        println!("{line}");
    } else {
        println!("{}", printable(&line));
    }
}

/// `text` safe for a terminal: control characters (escape sequences, carriage returns and new
/// lines that would fake other lines) and bidirectional overrides, all of which a sender
/// controls, are shown escaped (`\u{1b}`) instead of acting.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn what_a_sender_wrote_cannot_drive_the_terminal() {
        assert_eq!(
            printable("plain text, ünïcode 😀"),
            "plain text, ünïcode 😀"
        );
        assert_eq!(
            printable("\u{1b}[2J\rbob/1: fake\nline\u{202e}gpj.exe"),
            "\\u{1b}[2J\\u{d}bob/1: fake\\u{a}line\\u{202e}gpj.exe"
        );
    }
}
