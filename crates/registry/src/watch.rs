//! Wake-ups for blocking queries, per topic: a write notifies only the topics it touched, so a
//! watcher of one service sleeps through changes to every other service.
//!
//! Owns the topic → channel map; it carries no data (readers re-read the state when woken).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// What a blocking read depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Everything under one service name: its instances and their checks.
    Service(String),
    /// The list of service names and tags (catalog/services).
    Services,
    /// Any check anywhere (health/state).
    Checks,
    /// Any KV entry.
    Kv,
    /// Nodes (this registry has one; it only changes on restart).
    Nodes,
}

#[derive(Default)]
pub struct Watchers {
    topics: Mutex<HashMap<Topic, watch::Sender<u64>>>,
}

impl Watchers {
    /// A receiver that resolves `changed()` on the next notification of `topic`. Subscribe before
    /// reading the state, so a write between the read and the wait is never missed.
    pub fn subscribe(&self, topic: Topic) -> watch::Receiver<u64> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(topic)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub fn notify(&self, touched: impl IntoIterator<Item = Topic>, index: u64) {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        for topic in touched {
            if let Some(sender) = topics.get(&topic) {
                if sender.receiver_count() == 0 {
                    topics.remove(&topic);
                } else {
                    sender.send_replace(index);
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.topics.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests;
