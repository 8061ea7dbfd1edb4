//! Wider vector instructions for hot loops, chosen at run time.
//!
//! rime is built for the baseline x86-64 (two doubles per vector), so that
//! one binary runs on any machine. A function defined through
//! [`wide_fn!`](crate::wide_fn) is compiled twice, for the baseline and
//! with AVX2 (four doubles per vector), and runs the AVX2 copy where the
//! CPU has it. Only elementwise loops go through it: without fused
//! multiply-adds (Rust never contracts `a * b + c`) each element is the same
//! IEEE operation whatever the width, so results are the same bits on every
//! machine.

/// Defines a function whose body is compiled for the baseline and for
/// AVX2, dispatching at run time (the CPU check is a cached load).
#[macro_export]
#[doc(hidden)]
macro_rules! wide_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $crate::wide_fn! { $(#[$meta])* $vis fn $name($($arg: $ty),*) -> () $body }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn inner($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) -> $ret {
                    inner($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            inner($($arg),*)
        }
    };
}

wide_fn! {
    /// `y += alpha x`, elementwise (`y_i + alpha * x_i`).
    pub fn axpy(y: &mut [f64], alpha: f64, x: &[f64]) {
        let x = &x[..y.len()];
        for (v, k) in y.iter_mut().zip(x) {
            *v += alpha * k;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn axpy_is_the_scalar_loop_bit_for_bit() {
        let x: Vec<f64> = (0..37).map(|i| (i as f64 * 0.37).sin()).collect();
        let mut y: Vec<f64> = (0..37).map(|i| (i as f64 * 0.11).cos()).collect();
        let want: Vec<f64> = y.iter().zip(&x).map(|(v, k)| v + 0.3 * k).collect();
        super::axpy(&mut y, 0.3, &x);
        assert_eq!(y, want);
    }
}
