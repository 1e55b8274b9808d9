//! Batches for training and `check_model`: shuffled epochs, collation, background workers.
//!
//! Like the original's `DataLoader` (§18.2): every epoch is a fresh shuffle (or the dataset order
//! for an unshuffled loader), `ceil(len / batch_size)` batches, the last partial batch kept.
//! Unlike it, everything is deterministic: the order of epoch `e` comes from `(seed, e)` and the
//! seed handed to the dataset for item `i` from `(seed, e, i)`, so a resumed run can pick up at
//! any batch of any epoch and see exactly the batches the uninterrupted run saw.
//!
//! With `num_workers > 0`, worker threads prepare batches ahead of the training thread, at most
//! `prefetch` batches in flight; batches are always delivered in order. An item the dataset
//! cannot produce (an unreadable image) is left out of its batch and reported with the batch,
//! never a crash.

use crate::data::{Batch, SceneGraphDataset, collate};
use crate::rng::{TrainRng, derive_seed, permutation};
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A batch as the loader delivers it.
#[derive(Debug)]
pub struct LoadedBatch {
    /// Position of the batch in its epoch, from 0.
    pub index: usize,
    /// Collated good items; `num_images` may be below the batch size (last batch, bad items)
    /// and even 0 when every item of the batch failed.
    pub batch: Batch,
    /// One line per item that failed to load: `item <index>: <error>`.
    pub errors: Vec<String>,
}

/// Where the items come from and how they are grouped.
#[derive(Clone)]
pub struct Loader {
    dataset: Arc<dyn SceneGraphDataset>,
    batch_size: usize,
    shuffle: bool,
    num_workers: usize,
    prefetch: usize,
    seed: u64,
    /// Distinguishes the streams of loaders sharing a seed (train / val / check).
    tag: String,
}

impl Loader {
    /// `prefetch` defaults to twice the workers (PyTorch's default of 2 batches per worker).
    pub fn new(
        dataset: Arc<dyn SceneGraphDataset>,
        batch_size: usize,
        shuffle: bool,
        num_workers: usize,
        seed: u64,
        tag: &str,
    ) -> Self {
        Self {
            dataset,
            batch_size: batch_size.max(1),
            shuffle,
            num_workers,
            prefetch: 2 * num_workers.max(1),
            seed,
            tag: tag.to_string(),
        }
    }

    /// Caps the number of batches in flight (at least 1).
    pub fn with_prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    pub fn dataset(&self) -> &Arc<dyn SceneGraphDataset> {
        &self.dataset
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch: `ceil(len / batch_size)` (last partial batch kept).
    pub fn num_batches(&self) -> usize {
        self.dataset.len().div_ceil(self.batch_size)
    }

    /// The dataset indices of epoch `epoch`, in delivery order.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let n = self.dataset.len();
        if self.shuffle {
            let mut rng = TrainRng::derived(self.seed, &format!("{}/order", self.tag), &[epoch]);
            permutation(n, &mut rng)
        } else {
            (0..n).collect()
        }
    }

    /// The seed the dataset gets for item `index` in epoch `epoch`.
    pub fn item_seed(&self, epoch: u64, index: usize) -> u64 {
        derive_seed(
            self.seed,
            &format!("{}/item", self.tag),
            &[epoch, index as u64],
        )
    }

    /// Iterates the batches of epoch `epoch` starting at batch `start_batch` (for resuming).
    pub fn epoch(&self, epoch: u64, start_batch: usize) -> EpochIter {
        let order = Arc::new(self.order(epoch));
        let num_batches = self.num_batches();
        let start = start_batch.min(num_batches);
        let job = Arc::new(BatchJob {
            dataset: self.dataset.clone(),
            order,
            batch_size: self.batch_size,
            epoch,
            loader: self.clone_light(),
        });
        let mut iter = EpochIter {
            job,
            next_deliver: start,
            next_assign: start,
            end: num_batches,
            workers: Vec::new(),
            job_tx: None,
            result_rx: None,
            pending: BTreeMap::new(),
        };
        if self.num_workers > 0 && start < num_batches {
            let (job_tx, job_rx) = channel::<usize>();
            let (result_tx, result_rx) = channel::<LoadedBatch>();
            let job_rx = Arc::new(Mutex::new(job_rx));
            for _ in 0..self.num_workers.min(num_batches - start) {
                let job_rx = job_rx.clone();
                let result_tx = result_tx.clone();
                let job = iter.job.clone();
                iter.workers
                    .push(std::thread::spawn(move || worker(job, job_rx, result_tx)));
            }
            iter.job_tx = Some(job_tx);
            iter.result_rx = Some(result_rx);
            for _ in 0..self.prefetch {
                iter.assign_next();
            }
        }
        iter
    }

    fn clone_light(&self) -> LoaderSeeds {
        LoaderSeeds {
            seed: self.seed,
            tag: self.tag.clone(),
        }
    }
}

struct LoaderSeeds {
    seed: u64,
    tag: String,
}

struct BatchJob {
    dataset: Arc<dyn SceneGraphDataset>,
    order: Arc<Vec<usize>>,
    batch_size: usize,
    epoch: u64,
    loader: LoaderSeeds,
}

impl BatchJob {
    fn load(&self, index: usize) -> LoadedBatch {
        let start = index * self.batch_size;
        let end = (start + self.batch_size).min(self.order.len());
        let mut samples = Vec::with_capacity(end - start);
        let mut errors = Vec::new();
        for &item in &self.order[start..end] {
            let seed = derive_seed(
                self.loader.seed,
                &format!("{}/item", self.loader.tag),
                &[self.epoch, item as u64],
            );
            match self.dataset.get(item, seed) {
                Ok(s) => samples.push(s),
                Err(e) => errors.push(format!("item {item}: {e}")),
            }
        }
        LoadedBatch {
            index,
            batch: collate(&samples),
            errors,
        }
    }
}

fn worker(job: Arc<BatchJob>, jobs: Arc<Mutex<Receiver<usize>>>, results: Sender<LoadedBatch>) {
    loop {
        // Hold the lock only to take a job, not while loading.
        let next = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(index) = next else { return };
        if results.send(job.load(index)).is_err() {
            return;
        }
    }
}

/// The batches of one epoch, in order. Dropping it stops the workers.
pub struct EpochIter {
    job: Arc<BatchJob>,
    next_deliver: usize,
    next_assign: usize,
    end: usize,
    workers: Vec<JoinHandle<()>>,
    job_tx: Option<Sender<usize>>,
    result_rx: Option<Receiver<LoadedBatch>>,
    pending: BTreeMap<usize, LoadedBatch>,
}

impl EpochIter {
    fn assign_next(&mut self) {
        if self.next_assign < self.end
            && let Some(tx) = &self.job_tx
            && tx.send(self.next_assign).is_ok()
        {
            self.next_assign += 1;
        }
    }

    /// Number of batches left in this epoch.
    pub fn remaining(&self) -> usize {
        self.end - self.next_deliver
    }
}

impl Iterator for EpochIter {
    type Item = LoadedBatch;

    fn next(&mut self) -> Option<LoadedBatch> {
        if self.next_deliver >= self.end {
            return None;
        }
        let index = self.next_deliver;
        let batch = if self.result_rx.is_none() {
            self.job.load(index)
        } else {
            loop {
                if let Some(b) = self.pending.remove(&index) {
                    break b;
                }
                let received = self.result_rx.as_ref().and_then(|rx| rx.recv().ok());
                match received {
                    Some(b) => {
                        self.pending.insert(b.index, b);
                    }
                    // A worker died (a panic inside the dataset): load in this thread so
                    // the epoch still completes in order.
                    None => {
                        self.result_rx = None;
                        self.job_tx = None;
                        break self.job.load(index);
                    }
                }
            }
        };
        self.next_deliver += 1;
        // Keep `prefetch` batches in flight: one delivered, one more assigned.
        self.assign_next();
        Some(batch)
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        // Closing the job channel makes idle workers return; a busy one finishes its batch,
        // fails to send (receiver gone) and returns.
        self.job_tx = None;
        self.result_rx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Sample;
    use crate::vocab::Vocab;
    use crate::{Error, Result};

    /// Item `i` is one object of class `i`; its image encodes the seed it was given. Items
    /// listed in `bad` fail.
    struct Toy {
        n: usize,
        bad: Vec<usize>,
        vocab: Vocab,
        /// How many items were requested (by any thread).
        calls: std::sync::atomic::AtomicUsize,
    }

    impl Toy {
        fn new(n: usize, bad: Vec<usize>) -> Self {
            let vocab = Vocab {
                object_name_to_idx: Default::default(),
                object_idx_to_name: vec![],
                attribute_name_to_idx: None,
                attribute_idx_to_name: None,
                pred_name_to_idx: Default::default(),
                pred_idx_to_name: vec![],
            };
            Self {
                n,
                bad,
                vocab,
                calls: Default::default(),
            }
        }
    }

    impl SceneGraphDataset for Toy {
        fn len(&self) -> usize {
            self.n
        }
        fn vocab(&self) -> &Vocab {
            &self.vocab
        }
        fn get(&self, index: usize, seed: u64) -> Result<Sample> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.bad.contains(&index) {
                return Err(Error::invalid(format!("image {index}.jpg: truncated")));
            }
            // Uneven work so that workers finish out of order.
            std::thread::sleep(std::time::Duration::from_micros((seed % 7) * 200));
            Ok(Sample {
                image: vec![(seed % 1000) as f32; 3],
                image_size: (1, 1),
                objs: vec![index as i64],
                boxes: vec![[0.0, 0.0, 1.0, 1.0]],
                masks: None,
                mask_size: 0,
                triples: vec![],
            })
        }
    }

    fn epoch_items(loader: &Loader, epoch: u64, start: usize) -> Vec<(Vec<i64>, Vec<f32>)> {
        loader
            .epoch(epoch, start)
            .map(|b| (b.batch.objs, b.batch.imgs))
            .collect()
    }

    #[test]
    fn epochs_cover_every_item_once_with_a_partial_last_batch() {
        let loader = Loader::new(Arc::new(Toy::new(10, vec![])), 4, true, 0, 3, "train");
        assert_eq!(loader.num_batches(), 3);
        let batches = epoch_items(&loader, 1, 0);
        assert_eq!(
            batches.iter().map(|b| b.0.len()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        let mut all: Vec<i64> = batches.iter().flat_map(|b| b.0.clone()).collect();
        assert_ne!(all, (0..10).collect::<Vec<_>>(), "shuffled");
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_ne!(loader.order(1), loader.order(2), "each epoch reshuffles");
    }

    #[test]
    fn workers_deliver_exactly_what_the_synchronous_loader_does() {
        let ds: Arc<dyn SceneGraphDataset> = Arc::new(Toy::new(37, vec![]));
        let sync = Loader::new(ds.clone(), 5, true, 0, 11, "train");
        let threaded = Loader::new(ds, 5, true, 3, 11, "train").with_prefetch(4);
        for epoch in [1, 2] {
            assert_eq!(
                epoch_items(&sync, epoch, 0),
                epoch_items(&threaded, epoch, 0)
            );
        }
        // Resuming at batch 3 yields the tail of the same epoch.
        let full = epoch_items(&sync, 2, 0);
        assert_eq!(epoch_items(&threaded, 2, 3), full[3..].to_vec());
    }

    #[test]
    fn unshuffled_loader_keeps_dataset_order() {
        let loader = Loader::new(Arc::new(Toy::new(6, vec![])), 4, false, 2, 0, "val");
        let objs: Vec<i64> = epoch_items(&loader, 1, 0)
            .into_iter()
            .flat_map(|b| b.0)
            .collect();
        assert_eq!(objs, (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn bad_items_are_reported_and_skipped() {
        let loader = Loader::new(Arc::new(Toy::new(6, vec![1, 4])), 3, false, 2, 0, "train");
        let batches: Vec<LoadedBatch> = loader.epoch(1, 0).collect();
        assert_eq!(batches[0].batch.objs, vec![0, 2]);
        assert_eq!(
            batches[0].errors,
            vec!["item 1: image 1.jpg: truncated".to_string()]
        );
        assert_eq!(batches[1].batch.objs, vec![3, 5]);
        assert_eq!(batches[1].batch.num_images, 2);
    }

    #[test]
    fn dropping_an_epoch_early_stops_the_workers() {
        use std::sync::atomic::Ordering::SeqCst;
        let toy = Arc::new(Toy::new(100, vec![]));
        let loader = Loader::new(toy.clone(), 2, true, 2, 0, "check");
        // Dropping the iterator joins the workers: bounded wait, so a worker that never stops
        // fails the test instead of hanging it.
        let (done_tx, done_rx) = channel();
        std::thread::spawn(move || {
            let mut epoch = loader.epoch(1, 0);
            let first: Vec<LoadedBatch> = epoch.by_ref().take(2).collect();
            drop(epoch);
            let _ = done_tx.send(first.len());
        });
        let taken = done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("dropping the epoch did not stop its workers within 30 s");
        assert_eq!(taken, 2);
        // The workers loaded the two batches taken plus at most the prefetched ones (4 in
        // flight) and one each in progress: nowhere near the 50 batches of the epoch, and
        // nothing more once the drop has returned.
        let loaded = toy.calls.load(SeqCst);
        assert!(
            (4..=2 * (2 + 4 + 2)).contains(&loaded),
            "{loaded} items loaded"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(toy.calls.load(SeqCst), loaded, "a worker kept loading");
    }
}
