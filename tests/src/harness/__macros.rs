//! Assertion macros. Each returns early from the enclosing function with
//! `Err(TestError::Fail(..))` naming `file:line`, the expressions and the observed values.

use std::fmt::Debug;

use super::TestError;

/// Formats a value with `{:?}`, adding the hex form when it differs (integers).
#[doc(hidden)]
pub fn show<T: Debug + ?Sized>(v: &T) -> String {
    let dec = format!("{v:?}");
    let hex = format!("{v:x?}");
    if hex != dec {
        format!("{dec} (hex {hex})")
    } else {
        dec
    }
}

/// Builds the failure for a comparison macro.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn cmp_failure<A: Debug + ?Sized, B: Debug + ?Sized>(
    file: &str,
    line: u32,
    a_expr: &str,
    op: &str,
    b_expr: &str,
    a: &A,
    b: &B,
    msg: Option<String>,
) -> TestError {
    let mut text = format!(
        "{file}:{line}: Expected {a_expr} ({}) {op} {b_expr} ({})",
        show(a),
        show(b)
    );
    if let Some(m) = msg {
        text.push_str(": ");
        text.push_str(&m);
    }
    TestError::Fail(text)
}

/// Builds the failure for `check!`, `check_ok!`, `check_err!` and `fail!`.
#[doc(hidden)]
pub fn plain_failure(file: &str, line: u32, what: &str, msg: Option<String>) -> TestError {
    let mut text = format!("{file}:{line}: {what}");
    if let Some(m) = msg {
        text.push_str(": ");
        text.push_str(&m);
    }
    TestError::Fail(text)
}

/// Fails the test unless the condition holds: `check!(cond)` or `check!(cond, "fmt", args..)`.
#[macro_export]
macro_rules! check {
    ($cond:expr $(,)?) => {
        if !$cond {
            return ::core::result::Result::Err($crate::harness::__macros::plain_failure(
                file!(), line!(), concat!("Expected ", stringify!($cond)), None,
            ).into());
        }
    };
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return ::core::result::Result::Err($crate::harness::__macros::plain_failure(
                file!(), line!(), concat!("Expected ", stringify!($cond)), Some(format!($($fmt)+)),
            ).into());
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __check_cmp {
    ($op:tt, $a:expr, $b:expr $(, $($fmt:tt)+)?) => {
        match (&$a, &$b) {
            (a, b) => {
                if !(*a $op *b) {
                    let msg: ::core::option::Option<String> = $crate::__opt_format!($($($fmt)+)?);
                    return ::core::result::Result::Err($crate::harness::__macros::cmp_failure(
                        file!(), line!(), stringify!($a), stringify!($op), stringify!($b), a, b, msg,
                    ).into());
                }
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __opt_format {
    () => {
        ::core::option::Option::None
    };
    ($($fmt:tt)+) => {
        ::core::option::Option::Some(format!($($fmt)+))
    };
}

/// Fails unless `a == b`: `check_eq!(a, b)` or `check_eq!(a, b, "fmt", args..)`.
#[macro_export]
macro_rules! check_eq {
    ($a:expr, $b:expr $(, $($fmt:tt)+)?) => { $crate::__check_cmp!(==, $a, $b $(, $($fmt)+)?) };
}

/// Fails unless `a != b`.
#[macro_export]
macro_rules! check_ne {
    ($a:expr, $b:expr $(, $($fmt:tt)+)?) => { $crate::__check_cmp!(!=, $a, $b $(, $($fmt)+)?) };
}

/// Fails unless `a < b`.
#[macro_export]
macro_rules! check_lt {
    ($a:expr, $b:expr $(, $($fmt:tt)+)?) => { $crate::__check_cmp!(<, $a, $b $(, $($fmt)+)?) };
}

/// Fails unless `a <= b`.
#[macro_export]
macro_rules! check_le {
    ($a:expr, $b:expr $(, $($fmt:tt)+)?) => { $crate::__check_cmp!(<=, $a, $b $(, $($fmt)+)?) };
}

/// Fails unless `a > b`.
#[macro_export]
macro_rules! check_gt {
    ($a:expr, $b:expr $(, $($fmt:tt)+)?) => { $crate::__check_cmp!(>, $a, $b $(, $($fmt)+)?) };
}

/// Fails unless `a >= b`.
#[macro_export]
macro_rules! check_ge {
    ($a:expr, $b:expr $(, $($fmt:tt)+)?) => { $crate::__check_cmp!(>=, $a, $b $(, $($fmt)+)?) };
}

/// Evaluates a `Result`; yields the `Ok` value, or fails naming the expression and the error
/// (`Display`): `let fd = check_ok!(open(..));` or `check_ok!(expr, "fmt", args..)`.
#[macro_export]
macro_rules! check_ok {
    ($e:expr $(, $($fmt:tt)+)?) => {
        match $e {
            ::core::result::Result::Ok(v) => v,
            ::core::result::Result::Err(err) => {
                #[allow(unused_mut)]
                let mut what = format!(concat!(stringify!($e), " failed: {}"), err);
                $( what = format!("{what}: {}", format!($($fmt)+)); )?
                return ::core::result::Result::Err($crate::harness::__macros::plain_failure(
                    file!(), line!(), &what, None,
                ).into());
            }
        }
    };
}

/// Evaluates a `Result` that must be an error; yields the error, or fails naming the
/// expression and the unexpected `Ok` value (`Debug`).
#[macro_export]
macro_rules! check_err {
    ($e:expr $(, $($fmt:tt)+)?) => {
        match $e {
            ::core::result::Result::Err(err) => err,
            ::core::result::Result::Ok(v) => {
                #[allow(unused_mut)]
                let mut what = format!(concat!(stringify!($e), " succeeded ({:?}) but must fail"), v);
                $( what = format!("{what}: {}", format!($($fmt)+)); )?
                return ::core::result::Result::Err($crate::harness::__macros::plain_failure(
                    file!(), line!(), &what, None,
                ).into());
            }
        }
    };
}

/// Fails the test now: `fail!("fmt", args..)` (like `VFIO_FAIL`).
#[macro_export]
macro_rules! fail {
    ($($fmt:tt)+) => {
        return ::core::result::Result::Err($crate::harness::__macros::plain_failure(
            file!(), line!(), &format!($($fmt)+), None,
        ).into())
    };
}

/// Skips the test now with a reason: `skip!("fmt", args..)` (like `SKIP(return, ...)`).
#[macro_export]
macro_rules! skip {
    ($($fmt:tt)+) => {
        return ::core::result::Result::Err($crate::harness::TestError::Skip(format!($($fmt)+)).into())
    };
}
