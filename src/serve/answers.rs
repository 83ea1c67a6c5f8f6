//! Blocks a connection answered from the cache: the ones waiting to go in (for room in the
//! subscriber's window, or a message boundary of the remote's stream), the ones answered
//! recently (so the subscriber's CANCELs of them can be hidden), and the bytes the
//! connection holds against the queue caps. Shared by the TCP and uTP injectors, which
//! differ only in how inserted bytes are numbered and carried.
//!
//! Queue accounting: every byte held by the connection (waiting here, or inserted and not
//! acked yet, which the injector charges through [`Answers::charge`]) is charged to it and
//! to the box-wide total the caller passes in (`all`), and released from both when it goes.

use std::collections::VecDeque;

use super::counters::ServeCounters;
use crate::wire::peerwire::BlockRef;

/// A block answered, waiting to be inserted.
#[derive(Debug)]
pub(super) struct Pending {
    pub block: BlockRef,
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
pub(super) struct Answers {
    pending: VecDeque<Pending>,
    /// Blocks answered (for CANCELs), most recent last; bounded by the caller's cap.
    answered: VecDeque<BlockRef>,
    queued: usize,
}

impl Answers {
    /// Bytes this connection holds.
    pub fn queued(&self) -> usize {
        self.queued
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The first waiting block.
    pub fn front(&self) -> Option<&Pending> {
        self.pending.front()
    }

    /// Take the first waiting block; its bytes stay charged until the caller frees them
    /// (they move into inserted packets or segments).
    pub fn pop(&mut self) -> Option<Pending> {
        self.pending.pop_front()
    }

    /// Release everything this connection holds from the box-wide total.
    pub fn release(&mut self, all: &mut usize) {
        *all = all.saturating_sub(self.queued);
        self.queued = 0;
    }

    pub fn free(&mut self, n: usize, all: &mut usize) {
        self.queued = self.queued.saturating_sub(n);
        *all = all.saturating_sub(n);
    }

    pub fn charge(&mut self, n: usize, all: &mut usize) {
        self.queued += n;
        *all += n;
    }

    /// Queue an answered block; the oldest answered block is forgotten past `answered_max`.
    pub fn answer(
        &mut self,
        block: BlockRef,
        data: Vec<u8>,
        answered_max: usize,
        all: &mut usize,
        counters: &mut ServeCounters,
    ) {
        self.charge(data.len(), all);
        if self.answered.len() >= answered_max && self.answered.pop_front().is_some() {
            counters.answered_evicted += 1;
        }
        self.answered.push_back(block);
        self.pending.push_back(Pending { block, data });
    }

    /// A CANCEL from S: whether it cancels a block we answered (then a copy still waiting is
    /// dropped; R never saw the REQUEST).
    pub fn cancel(&mut self, block: BlockRef, all: &mut usize) -> bool {
        if !self.answered.iter().rev().any(|b| *b == block) {
            return false;
        }
        let mut dropped = 0;
        self.pending.retain(|p| {
            let keep = p.block != block;
            if !keep {
                dropped += p.data.len();
            }
            keep
        });
        self.free(dropped, all);
        true
    }
}
