//! swarm-secrets hot paths: sealing and opening records (XChaCha20-Poly1305) of 1 KiB and 64 KiB,
//! through a bare `Dek` and through the `KeyManager`, and stretching an unlock key with the
//! recommended argon2id cost.
//!
//! Run: `cargo bench -p swarm-benches --bench secrets_seal -- --warm-up-time 1 --measurement-time 3`
//! Figures and targets: docs/BENCHMARKS.md, section swarm-secrets.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use swarm_secrets::rand_core::{CryptoRng, Error as RngError, RngCore};
use swarm_secrets::{Dek, KdfParams, KeyManager, NewKek, RecordPlace, Salt, UnlockKey};

/// SplitMix64: a fast deterministic generator for the benchmark's nonces and keys. NOT
/// cryptographic; it only keeps RNG cost out of the figures (a real node passes an OS-seeded
/// CSPRNG, whose 24 bytes per record cost well under a microsecond).
struct BenchRng(u64);

impl RngCore for BenchRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RngError> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for BenchRng {}

const SIZES: [(usize, &str); 2] = [(1024, "1KiB"), (64 * 1024, "64KiB")];

fn seal_open(c: &mut Criterion) {
    let mut rng = BenchRng(1);
    let dek = Dek::generate(&mut rng);
    let place = RecordPlace::LogEntry {
        index: 123_456,
        term: 7,
    };
    let mut group = c.benchmark_group("secrets_seal");
    for (size, label) in SIZES {
        let plaintext = vec![0x5a; size];
        let sealed = dek.seal(&place, &plaintext, &mut rng).unwrap();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", label), &plaintext, |b, p| {
            b.iter(|| dek.seal(black_box(&place), black_box(p), &mut rng).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("open", label), &sealed, |b, s| {
            b.iter(|| dek.open(black_box(&place), black_box(s)).unwrap())
        });
    }

    let (mut manager, file) = KeyManager::new(NewKek::Stored, &mut rng).unwrap();
    manager.handle_persisted(file.generation);
    let plaintext = vec![0x5a; 1024];
    group.throughput(Throughput::Bytes(1024));
    group.bench_function("manager_seal/1KiB", |b| {
        b.iter(|| {
            manager
                .seal(black_box(&place), black_box(&plaintext), &mut rng)
                .unwrap()
        })
    });
    group.finish();
}

fn stretch(c: &mut Criterion) {
    let mut rng = BenchRng(2);
    let key = UnlockKey::generate(&mut rng);
    let salt = Salt::generate(&mut rng);
    let params = KdfParams::RECOMMENDED;
    let mut group = c.benchmark_group("secrets_seal");
    group.sample_size(10);
    group.bench_function("unlock_key_stretch/m64MiB_t3_p1", |b| {
        b.iter(|| key.stretch(black_box(&params), &salt).unwrap())
    });
    group.finish();
}

criterion_group!(benches, seal_open, stretch);
criterion_main!(benches);
