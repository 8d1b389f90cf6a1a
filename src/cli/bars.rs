//! indicatif rendering of [`Progress`](composefs_export::progress::Progress) events on stderr.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use composefs_export::progress::{LayerKey, Progress};

/// One bar per layer being rebuilt, an overall line, and a spinner for skopeo.
pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    layers: Mutex<HashMap<LayerKey, ProgressBar>>,
    spinner: Mutex<Option<ProgressBar>>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Bars {
    /// Bars drawn on stderr.
    pub fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(style(
            "{msg:>10} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec}",
        ));
        overall.set_message("total");
        Self {
            multi,
            overall,
            layers: Mutex::new(HashMap::new()),
            spinner: Mutex::new(None),
        }
    }

    /// Remove every bar from the screen.
    pub fn clear(&self) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Bars {
    fn layer_started(&self, _image: &str, layer: &LayerKey, total: u64) {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(style(
            "{prefix:>10} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        ));
        bar.set_prefix(layer.to_string());
        self.overall.inc_length(total);
        if let Ok(mut l) = self.layers.lock() {
            l.insert(layer.clone(), bar);
        }
    }

    fn layer_advanced(&self, layer: &LayerKey, bytes: u64) {
        if let Ok(l) = self.layers.lock() {
            if let Some(bar) = l.get(layer) {
                bar.inc(bytes);
            }
        }
        self.overall.inc(bytes);
    }

    fn layer_finished(&self, layer: &LayerKey) {
        if let Ok(mut l) = self.layers.lock() {
            if let Some(bar) = l.remove(layer) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
    }

    fn layer_skipped(&self, _image: &str, layer: &LayerKey, total: u64) {
        self.overall.inc_length(total);
        self.overall.inc(total);
        let _ = self.multi.println(format!(
            "{:>10} already present, skipped",
            layer.to_string()
        ));
    }

    fn stage(&self, message: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(super::print::escape_control(message).into_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut s) = self.spinner.lock() {
            *s = Some(bar);
        }
    }

    fn stage_finished(&self) {
        if let Ok(mut s) = self.spinner.lock() {
            if let Some(bar) = s.take() {
                bar.finish_and_clear();
            }
        }
    }
}
