//! Maps wall-clock time to simulated time for paced runs (`--speed`).

use std::time::Instant;

pub struct Pacer {
    sim_start: i64,
    wall_start: Instant,
    speed: Option<f64>,
}

impl Pacer {
    /// `speed`: simulated seconds per wall second; `None` = unpaced.
    pub fn new(sim_start: i64, speed: Option<f64>) -> Self {
        Pacer {
            sim_start,
            wall_start: Instant::now(),
            speed,
        }
    }

    /// The simulated instant that may be emitted now.
    pub fn horizon(&self) -> i64 {
        match self.speed {
            None => i64::MAX,
            Some(speed) => {
                self.sim_start + (self.wall_start.elapsed().as_secs_f64() * speed * 1000.0) as i64
            }
        }
    }

    /// Sleeps until `sim_time` may be emitted.
    pub fn wait_for(&self, sim_time: i64) {
        if let Some(speed) = self.speed {
            let due = (sim_time - self.sim_start) as f64 / (speed * 1000.0);
            let elapsed = self.wall_start.elapsed().as_secs_f64();
            if due > elapsed {
                std::thread::sleep(std::time::Duration::from_secs_f64(due - elapsed));
            }
        }
    }
}
