//! CogVideoX (`CogVideoXPipeline`: CogVideoX-2b, CogVideoX-5b, CogVideoX1.5-5B): T5 v1.1 text
//! encoder (shared with other families: `nn::t5_encoder`) and its tokenizer.

pub mod tokenizer;
