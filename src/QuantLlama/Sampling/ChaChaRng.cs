using System.Numerics;

namespace QuantLlama.Sampling;

/// <summary>
/// The random stream of Rust's <c>rand::rngs::StdRng::seed_from_u64(seed)</c> (ChaCha with 12 rounds, keyed by a
/// PCG32 expansion of the seed, nonce 0), which candle's LogitsProcessor draws from, so that a seed means the same
/// sequence of numbers here and there.
/// </summary>
public sealed class ChaChaRng
{
    private readonly uint[] _key = new uint[8];
    private readonly uint[] _block = new uint[16];
    private readonly uint[] _state = new uint[16];
    private readonly int _doubleRounds;
    private ulong _counter;
    private int _index = 16;

    /// <param name="rounds">12 for StdRng; 20 for ChaCha20 (to check against published test vectors).</param>
    public ChaChaRng(ReadOnlySpan<uint> key, int rounds = 12)
    {
        if (key.Length != 8) throw new ArgumentException("a ChaCha key is 8 words");
        if (rounds <= 0 || rounds % 2 != 0) throw new ArgumentException("rounds must be positive and even");
        key.CopyTo(_key);
        _doubleRounds = rounds / 2;
    }

    /// <summary>rand_core's SeedableRng::seed_from_u64: four bytes of the seed at a time from PCG32 (XSH RR).</summary>
    public static ChaChaRng SeedFromU64(ulong state)
    {
        Span<uint> key = stackalloc uint[8];
        for (int i = 0; i < 8; i++)
        {
            state = unchecked(state * 6364136223846793005UL + 11634580027462260723UL);
            uint xorshifted = (uint)(((state >> 18) ^ state) >> 27);
            int rot = (int)(state >> 59);
            key[i] = BitOperations.RotateRight(xorshifted, rot);
        }
        return new ChaChaRng(key);
    }

    public uint NextUInt32()
    {
        if (_index >= 16)
        {
            Refill();
            _index = 0;
        }
        return _block[_index++];
    }

    /// <summary>rand's UniformFloat&lt;f32&gt; over [0, 1): 23 random mantissa bits under exponent 0, minus one.</summary>
    public float NextFloat01() => BitConverter.Int32BitsToSingle((int)((NextUInt32() >> 9) | 0x3f800000u)) - 1.0f;

    private void Refill()
    {
        var s = _state;
        s[0] = 0x61707865; s[1] = 0x3320646e; s[2] = 0x79622d32; s[3] = 0x6b206574;
        for (int i = 0; i < 8; i++) s[4 + i] = _key[i];
        s[12] = (uint)_counter; s[13] = (uint)(_counter >> 32);
        s[14] = 0; s[15] = 0;
        s.CopyTo(_block, 0);
        var x = _block;
        for (int r = 0; r < _doubleRounds; r++)
        {
            Quarter(x, 0, 4, 8, 12); Quarter(x, 1, 5, 9, 13); Quarter(x, 2, 6, 10, 14); Quarter(x, 3, 7, 11, 15);
            Quarter(x, 0, 5, 10, 15); Quarter(x, 1, 6, 11, 12); Quarter(x, 2, 7, 8, 13); Quarter(x, 3, 4, 9, 14);
        }
        for (int i = 0; i < 16; i++) x[i] += s[i];
        _counter++;
    }

    private static void Quarter(uint[] x, int a, int b, int c, int d)
    {
        x[a] += x[b]; x[d] = BitOperations.RotateLeft(x[d] ^ x[a], 16);
        x[c] += x[d]; x[b] = BitOperations.RotateLeft(x[b] ^ x[c], 12);
        x[a] += x[b]; x[d] = BitOperations.RotateLeft(x[d] ^ x[a], 8);
        x[c] += x[d]; x[b] = BitOperations.RotateLeft(x[b] ^ x[c], 7);
    }
}
