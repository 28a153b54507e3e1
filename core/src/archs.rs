//! The architectures microconv ships: the seed experiment's CNN and a small one sized
//! for a Cortex-M4 with 64 KiB of RAM.

use crate::layers::{Conv2d, Dense, Dropout, MaxPool};
use crate::net::{Arch, Layer};
use crate::shape::{Padding, Shape};

/// One MNIST image: 28 x 28 pixels, one channel.
pub const MNIST_INPUT: Shape = Shape::new(28, 28, 1);

const POOL2: Layer = Layer::MaxPool(MaxPool::new(2, 2, Padding::Same));

/// The seed experiment's network (TensorFlow's classic MNIST tutorial), SAME padding:
/// conv5x5 32, pool, conv5x5 64, pool, dense 1024, dropout (keep 0.75), dense 10.
/// 3,274,634 parameters.
pub const SEED: Arch<'static> = Arch::new(
    MNIST_INPUT,
    &[
        Layer::Conv2d(Conv2d::new(5, 32)),
        Layer::Relu,
        POOL2,
        Layer::Conv2d(Conv2d::new(5, 64)),
        Layer::Relu,
        POOL2,
        Layer::Flatten,
        Layer::Dense(Dense::new(1024)),
        Layer::Relu,
        Layer::Dropout(Dropout::new(0.75)),
        Layer::Dense(Dense::new(10)),
    ],
);

/// A small network for microcontrollers (13,194 parameters, about 1 M multiply-adds per
/// image): conv5x5 8, pool, conv5x5 16, pool, conv3x3 32, pool, dense 10, SAME padding.
pub const SMALL: Arch<'static> = Arch::new(
    MNIST_INPUT,
    &[
        Layer::Conv2d(Conv2d::new(5, 8)),
        Layer::Relu,
        POOL2,
        Layer::Conv2d(Conv2d::new(5, 16)),
        Layer::Relu,
        POOL2,
        Layer::Conv2d(Conv2d::new(3, 32)),
        Layer::Relu,
        POOL2,
        Layer::Flatten,
        Layer::Dense(Dense::new(10)),
    ],
);

const _: () = assert!(SEED.is_valid() && SMALL.is_valid());
const _: () = assert!(SEED.param_count() == 3_274_634);
const _: () = assert!(SMALL.param_count() == 13_194);
