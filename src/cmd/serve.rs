//! `sg2im serve` — the scene-graph studio: a page and a JSON API over one loaded model.

use anyhow::Context;
use sg2im::device::DeviceChoice;
use sg2im::serve::{ServeConfig, Studio, ctrl_c, is_exposed};
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model file: an sg2im-rs model (.safetensors) or an original PyTorch checkpoint (.pt).
    #[arg(long, default_value = "sg2im-models/vg128.pt")]
    checkpoint: PathBuf,
    /// Address to listen on. Anything but a loopback address exposes the studio to the network.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// 0 lets the OS choose a free port.
    #[arg(long, default_value_t = 8008)]
    port: u16,
    /// cpu, gpu, cuda or vulkan (as for `sg2im run`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Larger scene graphs are refused (400).
    #[arg(long = "max_objects", default_value_t = 64)]
    max_objects: usize,
    /// Requests that may wait for the model; beyond that the server answers 503 + Retry-After.
    #[arg(long = "queue_size", default_value_t = 64)]
    queue_size: usize,
    /// Time limit of one generate request in seconds, waiting in the queue included.
    #[arg(long = "request_timeout", default_value_t = 30)]
    request_timeout: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let device = args.device.parse::<DeviceChoice>()?.device()?;
    let mut config = ServeConfig::new(args.checkpoint, device);
    config.host = args.host;
    config.port = args.port;
    config.max_objects = args.max_objects;
    config.queue_size = args.queue_size;
    config.request_timeout = std::time::Duration::from_secs(args.request_timeout.max(1));
    let runtime = tokio::runtime::Runtime::new().context("sg2im serve: starting tokio")?;
    runtime.block_on(async {
        let studio = Studio::bind(&config).await.context("sg2im serve")?;
        for w in studio.warnings() {
            eprintln!("warning: {}: {w}", config.checkpoint.display());
        }
        let addr = studio.local_addr()?;
        if is_exposed(config.host) {
            eprintln!(
                "warning: listening on {addr}, reachable from other machines; the studio has no authentication"
            );
        }
        println!("sg2im studio: http://{addr}/  (Ctrl-C to stop)");
        studio.run(ctrl_c()).await.context("sg2im serve")?;
        println!("stopped");
        anyhow::Ok(())
    })
}
