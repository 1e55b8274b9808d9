//! Generation speed of the built-in `shapes` scenes (moved here from the tests, which assert
//! behaviour only): median milliseconds per 64×64 sample over 200 draws, against the training
//! loader's budget of well under 1 ms per sample on an idle core. `cargo bench --bench shapes`.

use sg2im::data::SceneGraphDataset;
use sg2im::data::synthetic::{ShapesConfig, ShapesDataset};
use std::time::Instant;

fn main() {
    let ds = ShapesDataset::new(ShapesConfig {
        image_size: (64, 64),
        num_images: 50,
        seed: 0,
        ..ShapesConfig::default()
    })
    .expect("shapes dataset");
    let mut times = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        std::hint::black_box(ds.get(i % 50, i as u64).expect("shapes sample"));
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "shapes 64x64: median {:.3} ms per sample (200 samples, goal well under 1 ms)",
        times[times.len() / 2] * 1e3
    );
}
