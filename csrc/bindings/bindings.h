// One bind function per kernel family; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

void mft_bind_rms_norm(pybind11::module_ &m);
void mft_bind_attention(pybind11::module_ &m);
void mft_bind_quant_matmul(pybind11::module_ &m);
