//! The IR text form. It prints and parses back exactly, so pass tests read as
//! "IR text in -> pass -> IR text out" and `vidlower dump-ir` output can be fed back in.
//!
//! ```text
//! graph @block {
//!   mesh dp=2,tp=4
//!   %0 = input "x" : f32[2,8] sharding=[{dp},{}]
//!   %1 = weight "w" : f32[8,8] sharding=[{tp},{}]
//!   %2 = dot_general(%0, %1) {lhs_contract=[1], rhs_contract=[0]} : f32[2,8]
//!   output "y" = %2
//! }
//! ```
//! Attributes that the result type already says (shapes, dtypes) are not repeated.

mod attrs;
mod parse;
mod print;

pub use parse::parse;
pub use print::print;
