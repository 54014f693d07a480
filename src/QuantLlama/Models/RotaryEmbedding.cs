namespace QuantLlama.Models;

/// <summary>
/// RoPE's angles for a position, as ggml's rope computes its cos/sin cache: theta starts at the position and is
/// multiplied by freq_base^(-2/n_rot) per pair; each pair's theta is divided by its frequency factor (rope_freqs, or LongRoPE's
/// rope_factors_short/long), then scaled linearly or by YaRN (rope_yarn), and cos/sin are multiplied by the magnitude scale.
/// </summary>
public sealed class RotaryEmbedding
{
    private readonly int _pairs;
    private readonly float _thetaScale, _freqScale, _extFactor, _magnitude;
    // [n_rot/2] divisors of each pair's theta; null: all 1.
    private readonly float[]? _freqFactors;
    // YaRN's ramp: pairs below Low extrapolate, above High interpolate.
    private readonly float _rampLow, _rampHigh;

    // YaRN's defaults in llama.cpp (yarn_beta_fast, yarn_beta_slow).
    private const float BetaFast = 32f, BetaSlow = 1f;

    public RotaryEmbedding(LlamaConfig config, float[]? freqFactors)
    {
        int dims = config.RopeDimensionCount;
        _pairs = dims / 2;
        _thetaScale = MathF.Pow(config.RopeFreqBase, -2.0f / dims);
        _freqScale = config.RopeFreqScale;
        _freqFactors = freqFactors;
        _extFactor = config.RopeScaling == RopeScalingType.Yarn ? 1f : 0f;
        float attnFactor = 1f;
        if (_extFactor != 0)
        {
            // llama.cpp's context sets attn_factor to YaRN's magnitude (0.1 ln factor + 1) and cancels it again,
            // because ggml's rope_yarn multiplies the same magnitude back in.
            float factor = 1f / _freqScale;
            attnFactor = factor <= 1f ? 1f : 0.1f * MathF.Log(factor) + 1f;
            attnFactor *= 1f / (1f + 0.1f * MathF.Log(factor));
            _rampLow = MathF.Max(0, MathF.Floor(CorrectionDim(dims, config.RopeYarnContext, config.RopeFreqBase, BetaFast)));
            _rampHigh = MathF.Min(dims - 1, MathF.Ceiling(CorrectionDim(dims, config.RopeYarnContext, config.RopeFreqBase, BetaSlow)));
        }
        _magnitude = attnFactor * config.RopeAttnFactor;
        if (_extFactor != 0) _magnitude *= 1f + 0.1f * MathF.Log(1f / _freqScale);
    }

    /// <summary>The pair index at which a rotation of <paramref name="rotations"/> turns fit the original context.</summary>
    private static float CorrectionDim(int dims, int originalContext, float freqBase, float rotations)
        => dims * MathF.Log(originalContext / (rotations * 2 * MathF.PI)) / (2 * MathF.Log(freqBase));

    /// <summary>cos and sin ([n_rot/2] each) of every rotated pair's angle at <paramref name="position"/>.</summary>
    public unsafe void Angles(int position, float* cos, float* sin)
    {
        float theta = position;
        for (int p = 0; p < _pairs; p++)
        {
            float extrapolated = _freqFactors == null ? theta : theta / _freqFactors[p];
            float angle = _freqScale * extrapolated;
            if (_extFactor != 0)
            {
                float y = (p - _rampLow) / MathF.Max(0.001f, _rampHigh - _rampLow);
                float mix = (1 - MathF.Min(1, MathF.Max(0, y))) * _extFactor;
                // ggml's build contracts this line into a fused multiply-add around the second product.
                angle = MathF.FusedMultiplyAdd(angle, 1 - mix, extrapolated * mix);
            }
            cos[p] = MathF.Cos(angle) * _magnitude;
            sin[p] = MathF.Sin(angle) * _magnitude;
            theta *= _thetaScale;
        }
    }
}
