//! Group commit for client writes.
//!
//! openraft 0.9 appends and flushes each `client_write` on its own before taking the next, so
//! a leader fsyncs once per write. The proposer puts concurrent commands into one
//! `Command::Batch` entry instead: while `MAX_IN_FLIGHT` entries are being appended and
//! replicated, new commands wait in the queue, and the next entry carries all of them. Each
//! caller still gets its own command's result. At low load a batch holds one command and
//! nothing waits.
//!
//! An entry stops counting once it is committed, while the state machine applies it: the
//! next entry is appended and replicated during that apply instead of after it. The state
//! machine tells when (`StateMachine::committed`), as openraft 0.9 answers a `client_write`
//! only once it is applied.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;

use crate::command::{Applied, Command, CommandResult};
use crate::types::{MemberNode, NodeId, Raft};

/// Most commands in one entry.
pub const MAX_BATCH: usize = 512;
/// Entries being appended and replicated at once (not counting the one being applied). One
/// gives the largest batches; on two cores that beat two at every concurrency measured (see
/// BENCHMARKS.md).
pub const MAX_IN_FLIGHT: usize = 1;

/// Why a command could not be committed. Its outcome is then unknown only for `Fatal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This server is not (or no longer) the leader; nothing was written.
    #[error("this server is not the leader")]
    NotLeader,
    /// Raft failed or is shutting down.
    #[error("raft: {0}")]
    Fatal(String),
}

type Reply = oneshot::Sender<Result<CommandResult, ProposeError>>;

struct Proposal {
    command: Command,
    reply: Reply,
}

/// Submits commands to Raft in batches. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Proposer {
    queue: mpsc::UnboundedSender<Proposal>,
}

impl Proposer {
    /// Starts the batching task for `raft`. It stops once every `Proposer` clone is dropped,
    /// after finishing the entries in flight.
    pub fn start(
        raft: Raft,
        committed: watch::Receiver<u64>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(raft, rx, committed));
        (Self { queue }, task)
    }

    /// Commits `command` and answers what applying it produced, once it is committed on a
    /// majority and applied here.
    pub async fn propose(&self, command: Command) -> Result<CommandResult, ProposeError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ProposeError::Fatal("the proposer has stopped".into());
        self.queue
            .send(Proposal { command, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(
    raft: Raft,
    mut queue: mpsc::UnboundedReceiver<Proposal>,
    committed: watch::Receiver<u64>,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut writing = JoinSet::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let Some(first) = queue.recv().await else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let mut committed = committed.clone();
        let before = *committed.borrow_and_update();
        writing.spawn(async move {
            let write = write(&raft, batch);
            tokio::pin!(write);
            // This entry comes after every index given to the state machine so far, so once
            // it is given a later one, this entry is committed (or another entry was appended
            // first: the next batch then starts a round early, nothing worse). Without a
            // state machine to tell, the slot is held to the end.
            let committed = tokio::select! {
                () = &mut write => return,
                seen = committed.wait_for(|&c| c > before) => seen.is_ok(),
            };
            if committed {
                drop(slot);
            }
            write.await;
        });
        while writing.try_join_next().is_some() {}
    }
    while writing.join_next().await.is_some() {}
}

fn propose_error(e: RaftError<NodeId, ClientWriteError<NodeId, MemberNode>>) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ProposeError::NotLeader,
        other => ProposeError::Fatal(other.to_string()),
    }
}

async fn write(raft: &Raft, mut batch: Vec<Proposal>) {
    if batch.len() == 1 {
        let Proposal { command, reply } = batch.remove(0);
        let result = raft.client_write(command).await.map(|r| r.data);
        let _ = reply.send(result.map_err(propose_error));
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<Reply>) =
        batch.into_iter().map(|p| (p.command, p.reply)).unzip();
    let n = commands.len();
    match raft.client_write(Command::Batch { commands }).await {
        Ok(resp) => match resp.data {
            Ok(Applied::Batch(results)) if results.len() == n => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            other => {
                // apply answers a batch with one result per command; anything else is a bug.
                let e = ProposeError::Fatal(format!("batch of {n} applied as {other:?}"));
                tracing::error!(error = %e, "unexpected batch result");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        },
        Err(e) => {
            let e = propose_error(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
